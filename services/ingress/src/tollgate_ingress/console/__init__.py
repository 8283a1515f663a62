"""The web console at /ui: server-rendered pages over Tollgate's public APIs (no build step)."""

from litestar import Router

from tollgate_ingress.console import editing, pages

console_router = Router(
    path="/ui", include_in_schema=False, route_handlers=[*pages.HANDLERS, *editing.HANDLERS]
)

__all__ = ["console_router"]
