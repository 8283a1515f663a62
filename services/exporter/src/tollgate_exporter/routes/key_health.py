"""`POST /key/health`: the calling key's logging callbacks and their delivery health."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from litestar import Request, Response, post
from litestar.handlers import HTTPRouteHandler
from litestar.status_codes import HTTP_200_OK, HTTP_401_UNAUTHORIZED

from tollgate_exporter.delivery import DestinationHealth
from tollgate_exporter.routing import Destination, Router, RouteSet
from tollgate_shared import names
from tollgate_shared.state import KeyState, hash_key


def bearer_token(request: Request[Any, Any, Any]) -> str | None:
    raw = request.headers.get("authorization") or request.headers.get(names.HDR_LITELLM_KEY)
    if not raw:
        return None
    scheme, _, token = raw.partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else raw.strip()
    return token or None


def _auth_error(message: str) -> Response[dict[str, Any]]:
    return Response(
        {"error": {"message": message, "type": "auth_error", "param": "None", "code": "401"}},
        status_code=HTTP_401_UNAUTHORIZED,
    )


def report(
    routes: RouteSet,
    health: Callable[[Destination], DestinationHealth | None],
    window_s: float,
    now: float | None = None,
) -> dict[str, Any]:
    """LiteLLM's KeyHealthResponse for one key's resolved callbacks."""
    now = time.time() if now is None else now
    callbacks = list(dict.fromkeys([spec.name for spec in routes.resolution.callbacks]))
    if routes.resolution.source == "disabled":
        return {
            "key": "healthy",
            "logging_callbacks": {
                "callbacks": [],
                "status": "healthy",
                "details": "Logging is disabled for this key's team: nothing leaves Tollgate.",
            },
        }
    problems = [f"{p.callback}: {p.reason}" for p in routes.problems]
    delivered: list[str] = []
    for r in routes.routes:
        h = health(r.destination)
        problem = h.problem(now, window_s) if h else None
        if problem:
            problems.append(f"{r.callback} ({r.destination.label}): {problem}")
        elif h is not None and h.last_success is not None:
            delivered.append(
                f"{r.callback} ({r.destination.label}) last delivered "
                f"{now - h.last_success:.0f}s ago"
            )
    if problems:
        status = "unhealthy"
        details = "Delivery problems: " + "; ".join(problems)
    else:
        status = "healthy"
        details = (
            f"No delivery failures in the last {window_s:.0f}s for {callbacks} "
            f"(settings from {routes.resolution.source})"
        )
        if delivered:
            details += ": " + "; ".join(delivered)
    return {
        "key": "unhealthy" if status == "unhealthy" else "healthy",
        "logging_callbacks": {"callbacks": callbacks, "status": status, "details": details},
    }


def key_health_handler(
    router: Callable[[], Router | None],
    key_lookup: Callable[[str], KeyState | None],
    health: Callable[[Destination], DestinationHealth | None],
    master_key: str | None,
    window_s: float,
) -> HTTPRouteHandler:
    @post(
        "/key/health",
        operation_id="exporter_key_health",
        status_code=HTTP_200_OK,
        tags=["key management"],
    )
    async def key_health(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        """Check the calling key's logging: its callbacks and their recent delivery health."""
        token = bearer_token(request)
        if token is None:
            return _auth_error("No api key passed in: use 'Authorization: Bearer sk-...'")
        r = router()
        if r is None:
            return Response(
                {
                    "error": {
                        "message": "exporter is starting",
                        "type": "service_unavailable",
                        "param": "None",
                        "code": "503",
                    }
                },
                status_code=503,
            )
        if master_key and token == master_key:
            routes = r.for_call(None, None, None)
        else:
            key = key_lookup(hash_key(token))
            if key is None:
                return _auth_error("Authentication Error, invalid user key")
            routes = r.for_call(key.token, key.team_id, None)
        return Response(report(routes, health, window_s))

    return key_health
