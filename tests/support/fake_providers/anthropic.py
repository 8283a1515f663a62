"""A fake Anthropic Messages API: checks x-api-key, anthropic-version and the body's shape
(model, max_tokens, alternating roles, no system role inside messages); answers text, tool_use
or JSON (the forced tool), plain or as Messages SSE events; errors as Anthropic's."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from litestar import Request, Response, post
from litestar.response import Stream

from support.fake_providers import ANTHROPIC_KEY, words

if TYPE_CHECKING:
    from support.fake_providers import FakeProviders

ERROR_TYPES = {429: "rate_limit_error", 529: "overloaded_error", 400: "invalid_request_error"}


def _error(status: int, message: str) -> Response[Any]:
    kind = ERROR_TYPES.get(status, "api_error")
    return Response(
        {"type": "error", "error": {"type": kind, "message": message}}, status_code=status
    )


def check(fp: FakeProviders, headers: dict[str, str], body: Any) -> str | None:
    if headers.get("x-api-key") != ANTHROPIC_KEY:
        return fp.problem("anthropic: x-api-key missing or wrong")
    if not headers.get("anthropic-version"):
        return fp.problem("anthropic: anthropic-version header missing")
    if not isinstance(body.get("model"), str) or not isinstance(body.get("max_tokens"), int):
        return fp.problem("anthropic: model and max_tokens are required")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs or msgs[0].get("role") != "user":
        return fp.problem("anthropic: messages must start with a user turn")
    for a, b in itertools.pairwise(msgs):
        if a.get("role") == b.get("role"):
            return fp.problem("anthropic: roles must alternate")
    for m in msgs:
        # Content is a string or a list of blocks (both documented).
        if m.get("role") not in ("user", "assistant") or not isinstance(
            m.get("content"), (str, list)
        ):
            return fp.problem("anthropic: a message has a bad role or content")
    return None


def answer_blocks(fp: FakeProviders, body: Any) -> tuple[list[dict[str, Any]], str]:
    choice = body.get("tool_choice") or {}
    if choice.get("type") == "tool" and choice.get("name") == "json_tool_call":
        return [
            {
                "type": "tool_use",
                "id": "toolu_json",
                "name": "json_tool_call",
                "input": {"answer": fp.reply},
            }
        ], "tool_use"
    if fp.tool_call and body.get("tools"):
        name, args = fp.tool_call
        return [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_01", "name": name, "input": args},
        ], "tool_use"
    return [{"type": "text", "text": fp.reply}], "end_turn"


def usage(fp: FakeProviders, body: Any) -> dict[str, int]:
    # Two tokens read from the prompt cache and one written, on every call.
    return {
        "input_tokens": words(body.get("messages")) + words(body.get("system")),
        "output_tokens": len(fp.reply.split()),
        "cache_read_input_tokens": 2,
        "cache_creation_input_tokens": 1,
    }


def sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()


async def events(
    blocks: list[dict[str, Any]], stop: str, u: dict[str, int], model: str
) -> AsyncIterator[bytes]:
    start_usage = {k: v for k, v in u.items() if k != "output_tokens"} | {"output_tokens": 1}
    yield sse(
        "message_start",
        {
            "message": {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "usage": start_usage,
            }
        },
    )
    yield sse("ping", {})
    for i, b in enumerate(blocks):
        if b["type"] == "text":
            yield sse(
                "content_block_start", {"index": i, "content_block": {"type": "text", "text": ""}}
            )
            for j, w in enumerate(b["text"].split(" ")):
                text = (" " if j else "") + w
                yield sse(
                    "content_block_delta",
                    {"index": i, "delta": {"type": "text_delta", "text": text}},
                )
        else:
            start = {"type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}
            yield sse("content_block_start", {"index": i, "content_block": start})
            raw = json.dumps(b["input"])
            for part in (raw[: len(raw) // 2], raw[len(raw) // 2 :]):
                yield sse(
                    "content_block_delta",
                    {"index": i, "delta": {"type": "input_json_delta", "partial_json": part}},
                )
        yield sse("content_block_stop", {"index": i})
    yield sse(
        "message_delta",
        {"delta": {"stop_reason": stop}, "usage": {"output_tokens": u["output_tokens"]}},
    )
    yield sse("message_stop", {})


def routes(fp: FakeProviders) -> list[Any]:
    @post("/anthropic/v1/messages", status_code=200)
    async def messages(request: Request[Any, Any, Any]) -> Response[Any] | Stream:
        body = await request.json()
        headers = dict(request.headers)
        fp.requests.append(("anthropic", request.url.path, headers, body))
        wrong = check(fp, headers, body)
        if wrong:
            return _error(401 if "x-api-key" in wrong else 400, wrong)
        if "anthropic" in fp.fail:
            return _error(fp.fail["anthropic"], "Overloaded")
        blocks, stop = answer_blocks(fp, body)
        u = usage(fp, body)
        if body.get("stream"):
            return Stream(events(blocks, stop, u, body["model"]), media_type="text/event-stream")
        return Response(
            {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": blocks,
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": u,
            }
        )

    return [messages]
