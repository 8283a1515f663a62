"""The OpenAI-compatible routes: decode, authenticate, hand to the gateway, encode errors."""

from __future__ import annotations

import time
from typing import Any

from litestar import Request, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State
from litestar.response import Stream

from tollgate_ingress.auth import AuthError
from tollgate_ingress.gateway import Answer, Gateway, error_body
from tollgate_ingress.handlers import (
    BadRequestError,
    Call,
    now_utc,
    parse_chat_request,
    parse_embedding_request,
)
from tollgate_shared.events import new_event_id

JSON = "application/json"


def openai_error(
    status: int, message: str, err_type: str, param: str | None = None, code: str | None = None
) -> Response[bytes]:
    return Response(error_body(message, err_type, param, code), status_code=status, media_type=JSON)


def _auth_error(exc: AuthError) -> Response[bytes]:
    return openai_error(exc.status, exc.message, exc.err_type, None, exc.code)


async def _run_after(answer: Answer) -> None:
    answer.after()


@post(
    ["/v1/chat/completions", "/chat/completions", "/v1/embeddings", "/embeddings"],
    operation_id="chat_completions",
    status_code=200,
    tags=["llm"],
)
async def chat_completions(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    """OpenAI-compatible chat completions (plain or streamed as SSE) and embeddings."""
    t_start = time.perf_counter()
    start_time = now_utc()
    gw: Gateway = state.gateway
    headers = request.headers
    try:
        identity = gw.identify(headers)
        parse = (
            parse_embedding_request
            if request.url.path.endswith("embeddings")
            else (parse_chat_request)
        )
        req = parse(await request.body(), headers)
        gw.admit(identity, req)
        if gw.limiter is not None:
            await gw.limiter.admit(identity)
    except AuthError as exc:
        return _auth_error(exc)
    except BadRequestError as exc:
        return openai_error(400, exc.message, "invalid_request_error", exc.param, "400")
    call = Call(
        request_id=new_event_id(),
        identity=identity,
        request=req,
        start_time=start_time,
        requester_ip=request.client.host if request.client else None,
        user_agent=headers.get("user-agent"),
        traceparent=headers.get("traceparent"),
        tracestate=headers.get("tracestate"),
    )
    result = await (gw.stream(call, t_start) if req.stream else gw.complete(call, t_start))
    if isinstance(result, Answer):
        return Response(
            result.body,
            status_code=result.status,
            media_type=JSON,
            headers=result.headers,
            background=BackgroundTask(_run_after, result),
        )
    return Stream(
        result.body,
        media_type="text/event-stream",
        headers={**result.headers, "cache-control": "no-cache"},
    )


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
