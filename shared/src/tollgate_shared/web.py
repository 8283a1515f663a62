"""The HTTP pieces every service shares: `/health` with dependency checks and `/metrics`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from litestar import Response, Router, get
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

log = logging.getLogger(__name__)

DependencyCheck = Callable[[], Awaitable[Any]]


async def _run_check(check: DependencyCheck, timeout: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        detail = await asyncio.wait_for(check(), timeout)
    except Exception as exc:
        return {"status": "unhealthy", "error": f"{type(exc).__name__}: {exc}"[:300]}
    out: dict[str, Any] = {
        "status": "healthy",
        "latency_ms": round((time.perf_counter() - t0) * 1000, 2),
    }
    if isinstance(detail, Mapping):
        out.update(detail)
    return out


def health_router(
    service: str, checks: Callable[[], Mapping[str, DependencyCheck]], timeout: float = 2.0
) -> Router:
    """`GET /health`: 200 when every dependency answers, else 503, with each one's state.

    `checks` is called per request so the checks can read the app's current state.
    """

    @get("/health", operation_id=f"{service}_health", include_in_schema=True)
    async def health() -> Response[dict[str, Any]]:
        """Liveness and readiness, with the state of each dependency."""
        named = dict(checks())
        results = await asyncio.gather(*(_run_check(c, timeout) for c in named.values()))
        deps = dict(zip(named, results, strict=True))
        ok = all(r["status"] == "healthy" for r in deps.values())
        return Response(
            {"service": service, "status": "healthy" if ok else "unhealthy", "dependencies": deps},
            status_code=HTTP_200_OK if ok else HTTP_503_SERVICE_UNAVAILABLE,
        )

    @get(
        "/metrics", operation_id=f"{service}_metrics", include_in_schema=False, sync_to_thread=False
    )
    def metrics() -> Response[bytes]:
        """Prometheus text exposition."""
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return Router(path="/", route_handlers=[health, metrics], tags=["operations"])
