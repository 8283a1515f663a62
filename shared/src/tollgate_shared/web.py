"""The HTTP pieces every service shares: `/health` with dependency checks and `/metrics`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from litestar import Request, Response, Router, get
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from tollgate_shared.errors import error_body
from tollgate_shared.runtime import metrics_dir

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


async def run_checks(
    named: Mapping[str, DependencyCheck], timeout: float = 2.0
) -> dict[str, dict[str, Any]]:
    """Every check at once, each with its state (and its detail or error)."""
    results = await asyncio.gather(*(_run_check(c, timeout) for c in named.values()))
    return dict(zip(named, results, strict=True))


def peer_check(client: Any, url: str) -> DependencyCheck:
    """A check that another Tollgate service answers its own `/health` with 200."""

    async def check() -> dict[str, Any]:
        resp = await client.get(f"{url.rstrip('/')}/health", timeout=1.5)
        if resp.status_code != 200:
            raise RuntimeError(f"{url} answers /health with {resp.status_code}")
        return {}

    return check


def exposition() -> bytes:
    """The Prometheus text of this process or, when it is one of several workers
    (prometheus_client's multiprocess mode), of all of them summed: counters and histograms
    added, each gauge as its `multiprocess_mode` says."""
    directory = metrics_dir()
    if directory is None:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def health_router(
    service: str,
    checks: Callable[[], Mapping[str, DependencyCheck]],
    timeout: float = 2.0,
    *,
    peers: Callable[[], Mapping[str, DependencyCheck]] | None = None,
    worker: Mapping[str, Any] | None = None,
) -> Router:
    """`GET /health`: 200 when every dependency answers, else 503, with each one's state.

    `checks` is called per request so the checks can read the app's current state.
    `peers` (ingress's view of the other services) are reported under `services` and do
    not change the status: ingress keeps serving while a consumer is down. `worker` (one
    of several processes on one port: its index and pid) is shown as it is.
    """

    @get("/health", operation_id=f"{service}_health", include_in_schema=True)
    async def health() -> Response[dict[str, Any]]:
        """Liveness and readiness, with the state of each dependency."""
        deps = await run_checks(checks(), timeout)
        ok = all(r["status"] == "healthy" for r in deps.values())
        body: dict[str, Any] = {
            "service": service,
            "status": "healthy" if ok else "unhealthy",
            "dependencies": deps,
        }
        if worker is not None:
            body["worker"] = dict(worker)
        if peers is not None:
            body["services"] = await run_checks(peers(), timeout)
        return Response(body, status_code=HTTP_200_OK if ok else HTTP_503_SERVICE_UNAVAILABLE)

    @get(
        "/metrics", operation_id=f"{service}_metrics", include_in_schema=False, sync_to_thread=False
    )
    def metrics() -> Response[bytes]:
        """Prometheus text exposition."""
        return Response(exposition(), media_type=CONTENT_TYPE_LATEST)

    return Router(path="/", route_handlers=[health, metrics], tags=["operations"])


# --- errors: every Litestar route answers in OpenAI's format, never a bare 500 ------------


def validation_error(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    """A 400 naming the first offending parameter."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    keys = [str(e.get("key")) for e in extra if isinstance(e, dict) and e.get("key")]
    detail = "; ".join(
        f"{e.get('key')}: {e.get('message')}" for e in extra if isinstance(e, dict)
    ) or str(exc.detail)
    return Response(
        error_body(f"invalid parameter: {detail}", 400, param=keys[0] if keys else None),
        status_code=400,
    )


def http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    return Response(
        error_body(str(exc.detail), exc.status_code),
        status_code=exc.status_code,
        headers=exc.headers,
    )


def unexpected_error(req: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Logged with its traceback; the caller sees OpenAI's 500 body, never internals."""
    log.error("unexpected error on %s", req.url.path, exc_info=exc)
    return Response(error_body("internal error", 500), status_code=500)


OPENAI_EXCEPTION_HANDLERS: dict[Any, Any] = {
    ValidationException: validation_error,
    HTTPException: http_error,
    Exception: unexpected_error,
}
