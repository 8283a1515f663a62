"""The rest of LiteLLM's surface on port 4000: the health probes its deployments use, one
model by id, and a 501 naming the reason for each LiteLLM endpoint Tollgate does not serve."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from litestar import Request, Response, Router, get, route
from litestar.datastructures import State

from tollgate_ingress.auth import AuthError
from tollgate_ingress.service import Gateway
from tollgate_shared.errors import error_json

JSON = "application/json"

# LiteLLM endpoints Tollgate deliberately does not serve, and why (answered 501, never 404).
UNSERVED: tuple[tuple[str, str], ...] = (
    ("/images", "image generation is not proxied by Tollgate (LLM text calls only)"),
    ("/audio", "speech and transcription are not proxied by Tollgate (LLM text calls only)"),
    ("/moderations", "moderations are not proxied by Tollgate"),
    ("/rerank", "rerank is not proxied by Tollgate"),
    ("/files", "file storage is not proxied: Tollgate keeps no provider files"),
    ("/batches", "batches are not proxied: Tollgate keeps no provider files"),
    ("/fine_tuning", "fine-tuning jobs are not proxied by Tollgate"),
    ("/assistants", "the Assistants API is not proxied (use the Responses API)"),
    ("/threads", "the Assistants API is not proxied (use the Responses API)"),
    ("/vector_stores", "vector stores are not proxied by Tollgate"),
    ("/realtime", "the Realtime API (websockets) is not proxied by Tollgate"),
)


def _unserved_paths() -> list[str]:
    out = []
    for prefix, _ in UNSERVED:
        for base in (prefix, f"/v1{prefix}"):
            out += [base, f"{base}/{{rest:path}}"]
    return out


@route(
    _unserved_paths(),
    http_method=["GET", "POST", "PUT", "PATCH", "DELETE"],
    operation_id="unserved_litellm_endpoint",
    include_in_schema=False,
)
async def unserved(request: Request[Any, Any, Any]) -> Response[bytes]:
    """A LiteLLM endpoint Tollgate does not serve: 501 in OpenAI's format, saying why."""
    path = request.url.path.removeprefix("/v1")
    reason = next(r for p, r in UNSERVED if path == p or path.startswith(p + "/"))
    return Response(
        error_json(f"{request.url.path}: {reason}", 501, code="not_implemented"),
        status_code=501,
        media_type=JSON,
    )


@get(["/v1/models/{model_id:path}", "/models/{model_id:path}"], operation_id="retrieve_model")
async def retrieve_model(
    request: Request[Any, Any, Any], state: State, model_id: str
) -> Response[Any]:
    """One model group this caller may use, in OpenAI's model format (404 otherwise)."""
    gw: Gateway = state.gateway
    try:
        identity = gw.identify(request.headers)
    except AuthError as exc:
        return Response(exc.body(), status_code=exc.status, media_type=JSON)
    name = model_id.lstrip("/")
    if name not in gw.visible_models(identity):
        return Response(
            error_json(f"The model '{name}' does not exist", 404, param="model"),
            status_code=404,
            media_type=JSON,
        )
    body = {"id": name, "object": "model", "created": int(time.time()), "owned_by": "tollgate"}
    return Response(body, media_type=JSON)


Check = Callable[[], Awaitable[Any]]


def probe_router(checks: Callable[[], Mapping[str, Check]], timeout: float = 2.0) -> Router:
    """LiteLLM's probes: liveliness (the process answers) and readiness (its dependencies)."""

    @get(["/health/liveliness", "/health/liveness"], operation_id="health_liveliness")
    async def liveliness() -> Response[bytes]:
        """The process is alive (LiteLLM answers the same JSON string)."""
        return Response(b'"I\'m alive!"', media_type=JSON)

    @get("/health/readiness", operation_id="health_readiness")
    async def readiness() -> Response[dict[str, Any]]:
        """Ready when NATS, the watched state and Redis answer; each one's state, in
        LiteLLM's fields (`status`, `db`, `cache`) plus `dependencies`."""
        named = dict(checks())

        async def run(check: Check) -> dict[str, Any]:
            try:
                detail = await asyncio.wait_for(check(), timeout)
            except Exception as exc:
                return {"status": "unhealthy", "error": f"{type(exc).__name__}: {exc}"[:300]}
            return {"status": "healthy", **(detail if isinstance(detail, Mapping) else {})}

        results = dict(
            zip(named, await asyncio.gather(*(run(c) for c in named.values())), strict=True)
        )
        ok = all(r["status"] == "healthy" for r in results.values())
        redis = results.get("redis", {}).get("status")
        return Response(
            {
                "status": "healthy" if ok else "unhealthy",
                "db": "connected"
                if results.get("nats", {}).get("status") == "healthy"
                else "disconnected",
                "cache": "redis" if redis == "healthy" else None,
                "dependencies": results,
            },
            status_code=200 if ok else 503,
        )

    return Router("/", route_handlers=[liveliness, readiness])
