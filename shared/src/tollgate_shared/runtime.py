"""Starts a service process: logging, the event loop, and the HTTP server."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import uvicorn

from tollgate_shared.config import TollgateConfig
from tollgate_shared.settings import ServiceSettings, check_master_key


def setup_logging(level: str, service: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s",
    )
    # Access logs on the hot path are the proxy's job, not ours.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # httpx logs every request at INFO: measurable CPU on the proxy's hot path.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def serve(app: Any, host: str, port: int, *, log_level: str = "info", grace_s: int = 10) -> None:
    """Serve an ASGI app with uvloop and httptools; graceful on SIGINT/SIGTERM."""
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level=log_level.lower(),
        access_log=False,
        # Keep the process's logging setup (setup_logging) instead of uvicorn's own.
        log_config=None,
        timeout_graceful_shutdown=grace_s,
    )


S = TypeVar("S", bound=ServiceSettings)


def serve_service(settings: S, create_app: Callable[[S, TollgateConfig], Any]) -> None:
    """The `serve` command of every service: read the config, refuse a weak master key off
    loopback, build the app from its settings and config, and serve it."""
    cfg = settings.load_config()
    check_master_key(settings.effective_master_key(cfg), settings.host)
    serve(
        create_app(settings, cfg),
        settings.host,
        settings.port,
        log_level=settings.log_level,
        grace_s=settings.shutdown_grace_s,
    )
