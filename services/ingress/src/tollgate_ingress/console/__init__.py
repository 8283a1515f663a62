"""The web console at /ui: server-rendered pages over Tollgate's public APIs (no build step)."""

from tollgate_ingress.console.pages import console_router

__all__ = ["console_router"]
