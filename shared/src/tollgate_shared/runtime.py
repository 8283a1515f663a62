"""Starts a service process: logging, the event loop, and the HTTP server."""

from __future__ import annotations

import logging
import sys
from typing import Any

import uvicorn


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


def serve(app: Any, host: str, port: int, *, log_level: str = "info") -> None:
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
        timeout_graceful_shutdown=10,
    )
