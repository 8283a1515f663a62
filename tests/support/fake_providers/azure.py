"""A fake Azure OpenAI: checks the deployment path, `api-version` and the `api-key` header;
answers OpenAI's format (SSE chunks with usage last when streamed); errors as Azure's."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from litestar import Request, Response, post
from litestar.response import Stream

from support.fake_providers import AZURE_KEY, words

if TYPE_CHECKING:
    from support.fake_providers import FakeProviders


def _error(status: int, message: str) -> Response[Any]:
    return Response({"error": {"code": str(status), "message": message}}, status_code=status)


def routes(fp: FakeProviders) -> list[Any]:
    @post("/azure/openai/deployments/{deployment:str}/chat/completions", status_code=200)
    async def chat(request: Request[Any, Any, Any]) -> Response[Any] | Stream:
        deployment = request.path_params["deployment"]
        body = await request.json()
        headers = dict(request.headers)
        fp.requests.append(("azure", request.url.path, headers, body))
        if headers.get("api-key") != AZURE_KEY:
            return _error(401, fp.problem("azure: api-key missing or wrong"))
        if not request.query_params.get("api-version"):
            return _error(400, fp.problem("azure: api-version missing"))
        if "azure" in fp.fail:
            return _error(fp.fail["azure"], "Rate limit is exceeded.")
        p, c = words(body.get("messages")), len(fp.reply.split())
        u = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
        message: dict[str, Any] = {"role": "assistant", "content": fp.reply}
        finish = "stop"
        if fp.tool_call and body.get("tools"):
            name, args = fp.tool_call
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_az",
                        "type": "function",
                        "function": {"name": name, "arguments": json.dumps(args)},
                    }
                ],
            }
            finish = "tool_calls"
        base = {"id": "chatcmpl-az", "created": 1, "model": deployment}
        if not body.get("stream"):
            return Response(
                {
                    **base,
                    "object": "chat.completion",
                    "usage": u,
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                }
            )

        async def chunks() -> AsyncIterator[bytes]:
            def out(d: dict[str, Any]) -> bytes:
                return (
                    b"data: "
                    + json.dumps({**base, "object": "chat.completion.chunk", **d}).encode()
                    + b"\n\n"
                )

            yield out({"choices": [], "prompt_filter_results": []})
            delta = {k: v for k, v in message.items() if v is not None}
            if "tool_calls" in delta:
                delta["tool_calls"] = [{"index": 0, **delta["tool_calls"][0]}]
            yield out({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
            yield out({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
            yield out({"choices": [], "usage": u})
            yield b"data: [DONE]\n\n"

        return Stream(chunks(), media_type="text/event-stream")

    return [chat]
