"""The OpenAI-compatible routes: decode the HTTP request, hand it to the service, encode
its answer (a bare-ASGI fast path in front of Litestar for the LLM POSTs)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from litestar import Litestar, Request, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State
from litestar.response.base import ASGIResponse
from litestar.response.streaming import ASGIStreamingResponse
from litestar.types import ASGIApp, Receive, Scope, Send

from tollgate_ingress.auth import AuthError
from tollgate_ingress.completions.service import PATHS as COMPLETION_PATHS
from tollgate_ingress.completions.service import Completions
from tollgate_ingress.records import now_utc
from tollgate_ingress.service import Answer, Gateway, StreamAnswer
from tollgate_shared.errors import error_json
from tollgate_shared.events import new_event_id

log = logging.getLogger(__name__)

JSON = "application/json"

LLM_PATHS = ("/v1/chat/completions", "/chat/completions", "/v1/embeddings", "/embeddings")


async def _run_after(answer: Answer) -> None:
    assert answer.after is not None
    answer.after()


def asgi_response(result: Answer | StreamAnswer) -> ASGIResponse | ASGIStreamingResponse:
    """What Litestar's Response / Stream for this result would send."""
    if isinstance(result, Answer):
        return ASGIResponse(
            body=result.body,
            status_code=result.status,
            media_type=JSON,
            headers=result.headers,
            background=None if result.after is None else BackgroundTask(_run_after, result),
        )
    return ASGIStreamingResponse(
        iterator=result.body,
        media_type="text/event-stream",
        headers={**result.headers, "cache-control": "no-cache"},
        status_code=200,
    )


# A service's handler of one LLM call: (path, body, headers, client host, start) -> answer.
CallHandler = Callable[
    [str, bytes, Mapping[str, str], str | None, float], Awaitable[Answer | StreamAnswer]
]


async def answer_call(request: Request[Any, Any, Any], handler: CallHandler) -> ASGIApp:
    """Decode an LLM POST, hand it to the service's handler, encode its answer."""
    t_start = time.perf_counter()
    result = await handler(
        request.url.path,
        await request.body(),
        request.headers,
        request.client.host if request.client else None,
        t_start,
    )
    return asgi_response(result)


@post(list(LLM_PATHS), operation_id="chat_completions", status_code=200, tags=["llm"])
async def chat_completions(request: Request[Any, Any, Any], state: State) -> ASGIApp:
    """OpenAI-compatible chat completions (plain or streamed as SSE) and embeddings."""
    gw: Gateway = state.gateway
    return await answer_call(request, gw.answer)


@post(list(COMPLETION_PATHS), operation_id="text_completions", status_code=200, tags=["llm"])
async def text_completions(request: Request[Any, Any, Any], state: State) -> ASGIApp:
    """Legacy text completions (plain or streamed): passed through to a deployment that
    serves them, otherwise answered by a chat call."""
    completions: Completions = state.completions
    return await answer_call(request, completions.create)


@get(["/v1/models", "/models"], operation_id="list_models", tags=["llm"])
async def list_models(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    """The model groups this caller may use, in OpenAI's list format."""
    gw: Gateway = state.gateway
    try:
        identity = gw.identify(request.headers)
    except AuthError as exc:
        return Response(exc.body(), status_code=exc.status, media_type=JSON)
    created = int(time.time())
    data = [
        {"id": name, "object": "model", "created": created, "owned_by": "tollgate"}
        for name in gw.visible_models(identity)
    ]
    return Response({"object": "list", "data": data}, media_type=JSON)


# Litestar's default request body limit, which the route above enforces.
_MAX_BODY = 10_000_000
_FAST_PATHS = frozenset(LLM_PATHS)


class FastLlmRoutes:
    """The LLM routes as a bare ASGI app in front of Litestar, for the hot path.

    A POST to one of `LLM_PATHS` with a Content-Length within the body limit is
    answered here, with the same code and the same responses as `chat_completions`
    but without Litestar's routing, dependency resolution and middleware (a quarter
    of ingress's CPU per call). Everything else, including chunked or oversized
    bodies and the lifespan, goes to Litestar unchanged.
    """

    def __init__(self, app: Litestar) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw: Any = scope  # plain ASGI from here on
        gw: Gateway | None
        if (
            raw["type"] == "http"
            and raw["path"] == "/metrics"
            and (gw := getattr(self.app.state, "gateway", None)) is not None
            and gw.metrics.options.require_auth
        ):
            # require_auth_for_metrics_endpoint: /metrics lists key hashes, teams and spend.
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in raw["headers"]}
            try:
                gw.identify(headers)
            except AuthError as exc:
                await ASGIResponse(body=exc.body(), status_code=exc.status, media_type=JSON)(
                    scope, receive, send
                )
                return
        if (
            raw["type"] != "http"
            or raw["method"] != "POST"
            or raw["path"] not in _FAST_PATHS
            or (gw := getattr(self.app.state, "gateway", None)) is None
        ):
            await self.app(scope, receive, send)
            return
        t_start = time.perf_counter()
        # First value wins for a repeated header, as in Litestar's Headers.get.
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in reversed(raw["headers"])}
        length = headers.get("content-length", "")
        if not length.isdigit():
            await self.app(scope, receive, send)
            return
        if int(length) > _MAX_BODY:
            client = raw.get("client")
            await asgi_response(too_large(gw, raw["path"], headers, client, t_start))(
                scope, receive, send
            )
            return
        chunks: list[bytes] = []
        while True:
            message: Any = await receive()
            if message["type"] == "http.disconnect":
                return  # the client is gone: nothing to answer
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        client = raw.get("client")
        try:
            result = await gw.answer(
                raw["path"], b"".join(chunks), headers, client[0] if client else None, t_start
            )
        except Exception:
            log.exception("LLM call on %s failed unexpectedly", raw["path"])
            await ASGIResponse(
                body=b'{"status_code":500,"detail":"Internal Server Error"}',
                status_code=500,
                media_type=JSON,
            )(scope, receive, send)
            return
        await asgi_response(result)(scope, receive, send)


def too_large(
    gw: Gateway, path: str, headers: dict[str, str], client: Any, t_start: float
) -> Answer:
    """A body over the limit is refused unread, and like every refusal it is a failed call
    (an event, the counters, a failure row); a bad key is still the 401 it would be."""
    identity = None
    status, code = 413, "payload_too_large"
    message = f"request body of {headers.get('content-length')} bytes exceeds {_MAX_BODY} bytes"
    try:
        identity = gw.identify(headers)
        body = error_json(message, status, code=code)
    except AuthError as exc:
        status, code, message, body = exc.status, exc.code, exc.message, exc.body()
    return gw.refuse(
        path, b"", headers, client[0] if client else None, t_start, now_utc(), new_event_id(),
        identity, None, status, body, message, code,
    )  # fmt: skip
