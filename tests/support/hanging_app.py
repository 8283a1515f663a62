"""An ASGI app whose shutdown never finishes, for the supervisor's stop deadline: its
worker blocks in `_hang_in_shutdown`, the frame the dumped stacks must show."""

from __future__ import annotations

import time
from typing import Any

from tollgate_shared.config import TollgateConfig
from tollgate_shared.settings import ServiceSettings


def _hang_in_shutdown() -> None:
    time.sleep(600)


def create_app(_settings: ServiceSettings, _cfg: TollgateConfig) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    _hang_in_shutdown()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app
