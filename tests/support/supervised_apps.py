"""Tiny ASGI apps for the worker supervisor's tests, built in worker processes: one whose
shutdown never finishes (its worker blocks in `_hang_in_shutdown`, the frame the dumped
stacks must show), and one that takes seconds to build (a stop signal can arrive before
uvicorn listens for signals)."""

from __future__ import annotations

import sys
import time
from typing import Any

from tollgate_shared.config import TollgateConfig
from tollgate_shared.settings import ServiceSettings

BUILDING = "building the app"


def _hang_in_shutdown() -> None:
    time.sleep(600)


def _app(on_shutdown: Any = None) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if on_shutdown is not None:
                        on_shutdown()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


def create_hanging_app(_settings: ServiceSettings, _cfg: TollgateConfig) -> Any:
    return _app(_hang_in_shutdown)


def create_slow_app(_settings: ServiceSettings, _cfg: TollgateConfig) -> Any:
    print(BUILDING, file=sys.stderr, flush=True)
    time.sleep(2)
    return _app()
