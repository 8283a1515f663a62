"""The OpenAI-compatible routes: decode, authenticate, hand to the gateway, encode errors."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from litestar import Litestar, Request, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State
from litestar.response.base import ASGIResponse
from litestar.response.streaming import ASGIStreamingResponse
from litestar.types import ASGIApp, Receive, Scope, Send

from tollgate_ingress.auth import AuthError, Identity
from tollgate_ingress.gateway import Answer, Gateway, StreamAnswer, error_body
from tollgate_ingress.handlers import (
    BadRequestError,
    Call,
    now_utc,
    parse_chat_request,
    parse_embedding_request,
)
from tollgate_ingress.limits import RateLimiter
from tollgate_shared.events import new_event_id

log = logging.getLogger(__name__)

JSON = "application/json"


def openai_error(
    status: int, message: str, err_type: str, param: str | None = None, code: str | None = None
) -> Response[bytes]:
    return Response(error_body(message, err_type, param, code), status_code=status, media_type=JSON)


def _auth_error(exc: AuthError) -> Response[bytes]:
    return openai_error(exc.status, exc.message, exc.err_type, None, exc.code)


async def _run_after(answer: Answer) -> None:
    answer.after()


LLM_PATHS = ("/v1/chat/completions", "/chat/completions", "/v1/embeddings", "/embeddings")


async def answer_llm(
    gw: Gateway,
    path: str,
    raw: bytes,
    headers: Mapping[str, str],
    client_host: str | None,
    t_start: float,
) -> Answer | StreamAnswer:
    """One LLM call from its decoded parts; a refusal is an Answer with nothing to do after."""
    start_time = now_utc()
    try:
        identity = gw.identify(headers)
        parse = parse_embedding_request if path.endswith("embeddings") else parse_chat_request
        req = parse(raw, headers)
        gw.admit(identity, req)
        limiter = gw.limiter
        if limiter is not None:
            await limiter.admit(identity)
        slot = await limiter.enter(identity) if limiter is not None else None
    except AuthError as exc:
        return _refusal(exc.status, error_body(exc.message, exc.err_type, None, exc.code))
    except BadRequestError as exc:
        body = error_body(exc.message, "invalid_request_error", exc.param, "400")
        return _refusal(400, body)
    call = Call(
        request_id=new_event_id(),
        identity=identity,
        request=req,
        start_time=start_time,
        requester_ip=client_host,
        user_agent=headers.get("user-agent"),
        traceparent=headers.get("traceparent"),
        tracestate=headers.get("tracestate"),
    )
    if slot is None:
        return await (gw.stream(call, t_start) if req.stream else gw.complete(call, t_start))
    assert limiter is not None
    try:
        result = await (gw.stream(call, t_start) if req.stream else gw.complete(call, t_start))
    except BaseException:
        await limiter.leave(identity, slot)
        raise
    if isinstance(result, StreamAnswer):
        result.body = _then_leave(result.body, limiter, identity, slot)
    else:
        await limiter.leave(identity, slot)
    return result


async def _then_leave(
    body: AsyncIterator[bytes], limiter: RateLimiter, identity: Identity, slot: str
) -> AsyncIterator[bytes]:
    """The stream, giving back its parallel slot when it ends, fails or is abandoned."""
    try:
        async with contextlib.aclosing(body) as chunks:  # type: ignore[type-var]
            async for chunk in chunks:
                yield chunk
    finally:
        await limiter.leave(identity, slot)


def _refusal(status: int, body: bytes) -> Answer:
    return Answer(status, body, {}, _nothing)


def _nothing() -> None:
    return None


def asgi_response(result: Answer | StreamAnswer) -> ASGIResponse | ASGIStreamingResponse:
    """What Litestar's Response / Stream for this result would send."""
    if isinstance(result, Answer):
        return ASGIResponse(
            body=result.body,
            status_code=result.status,
            media_type=JSON,
            headers=result.headers,
            background=None if result.after is _nothing else BackgroundTask(_run_after, result),
        )
    return ASGIStreamingResponse(
        iterator=result.body,
        media_type="text/event-stream",
        headers={**result.headers, "cache-control": "no-cache"},
        status_code=200,
    )


@post(list(LLM_PATHS), operation_id="chat_completions", status_code=200, tags=["llm"])
async def chat_completions(request: Request[Any, Any, Any], state: State) -> ASGIApp:
    """OpenAI-compatible chat completions (plain or streamed as SSE) and embeddings."""
    t_start = time.perf_counter()
    result = await answer_llm(
        state.gateway,
        request.url.path,
        await request.body(),
        request.headers,
        request.client.host if request.client else None,
        t_start,
    )
    return asgi_response(result)


@get(["/v1/models", "/models"], operation_id="list_models", tags=["llm"])
async def list_models(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    """The model groups this caller may use, in OpenAI's list format."""
    gw: Gateway = state.gateway
    try:
        identity = gw.identify(request.headers)
    except AuthError as exc:
        return _auth_error(exc)
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
        if not length.isdigit() or int(length) > _MAX_BODY:
            await self.app(scope, receive, send)
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
            result = await answer_llm(
                gw, raw["path"], b"".join(chunks), headers, client[0] if client else None, t_start
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
