"""An OpenAI-compatible upstream for tests: a real HTTP server with latency and error injection.

Behaviour is set on the `FakeUpstream` object (shared with the server thread):
`latency_s` before answering, `fail_status` to answer with an OpenAI-format
error, `hang` to never answer, `cut_after` to break a stream off after that many
words, `tool_call` to answer with a function call instead of text. Every request
body is recorded in `requests`. Usage is deterministic: prompt tokens = words in
the messages, completion tokens = words in `reply`.

By default it speaks chat completions only (`/v1/responses` is a 404, as on vLLM or
Ollama); `responses_api=True` makes it also serve OpenAI's Responses API
(`/v1/responses`, plain and streamed, remembering its own response ids).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from litestar import Litestar, Request, Response, get, post
from litestar.response import Stream

from tollgate_devstack.embedded import free_port


def count_words(messages: Any) -> int:
    total = 0
    for m in messages or []:
        c = m.get("content") if isinstance(m, dict) else None
        if isinstance(c, str):
            total += len(c.split())
    return total


@dataclass
class FakeUpstream:
    reply: str = "Hello from the fake upstream"
    latency_s: float = 0.0
    fail_status: int | None = None
    hang: bool = False
    cut_after: int | None = None
    tool_call: dict[str, Any] | None = None
    responses_api: bool = False
    port: int = 0
    response_ids: set[str] = field(default_factory=set)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def usage(self, body: dict[str, Any]) -> dict[str, int]:
        p = count_words(body.get("messages"))
        c = len(self.reply.split())
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}

    def app(self) -> Litestar:
        up = self

        @post("/v1/chat/completions", status_code=200)
        async def chat(request: Request[Any, Any, Any]) -> Response[Any] | Stream:
            body = await request.json()
            up.requests.append(body)
            up.headers.append(dict(request.headers))
            if up.hang:
                await asyncio.sleep(3600)
            if up.latency_s:
                await asyncio.sleep(up.latency_s)
            if up.fail_status:
                return Response(
                    {
                        "error": {
                            "message": "injected failure",
                            "type": "server_error",
                            "param": None,
                            "code": str(up.fail_status),
                        }
                    },
                    status_code=up.fail_status,
                )
            rid = f"chatcmpl-fake{len(up.requests)}"
            created = int(time.time())
            model = body.get("model", "fake")
            if body.get("stream"):
                return Stream(up._sse(body, rid, created, model), media_type="text/event-stream")
            return Response(
                {
                    "id": rid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "tool_calls" if up.tool_call else "stop",
                            "message": up._message(),
                        }
                    ],
                    "usage": up.usage(body),
                }
            )

        @post("/v1/embeddings", status_code=200)
        async def embeddings(request: Request[Any, Any, Any]) -> dict[str, Any]:
            body = await request.json()
            up.requests.append(body)
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            tokens = sum(len(str(x).split()) for x in inputs)
            return {
                "object": "list",
                "model": body.get("model"),
                "data": [
                    {"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3, 0.4]}
                    for i in range(len(inputs))
                ],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }

        @get("/v1/models")
        async def models() -> dict[str, Any]:
            return {"object": "list", "data": [{"id": "fake", "object": "model"}]}

        @post("/v1/responses", status_code=200)
        async def responses(request: Request[Any, Any, Any]) -> Response[Any] | Stream:
            body = await request.json()
            up.requests.append(body)
            up.headers.append(dict(request.headers))
            if not up.responses_api:
                return Response({"detail": "Not Found"}, status_code=404)
            prev = body.get("previous_response_id")
            if prev is not None and prev not in up.response_ids:
                return Response(
                    {
                        "error": {
                            "message": f"Previous response with id '{prev}' not found.",
                            "type": "invalid_request_error",
                            "param": "previous_response_id",
                            "code": "previous_response_not_found",
                        }
                    },
                    status_code=404,
                )
            rid = f"resp_fake{len(up.requests)}"
            up.response_ids.add(rid)
            if body.get("stream"):
                return Stream(up._response_events(body, rid), media_type="text/event-stream")
            return Response(up._response(body, rid, "completed"))

        @post("/v1/completions", status_code=200)
        async def completions(request: Request[Any, Any, Any]) -> Response[Any] | Stream:
            """Legacy text completions, served (like /v1/responses) only when asked."""
            body = await request.json()
            up.requests.append(body)
            up.headers.append(dict(request.headers))
            if not up.responses_api:
                return Response({"detail": "Not Found"}, status_code=404)
            rid = f"cmpl-fake{len(up.requests)}"
            prompt = body.get("prompt")
            p = len(prompt.split()) if isinstance(prompt, str) else len(prompt or ())
            c = len(up.reply.split())
            usage = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
            if body.get("stream"):
                return Stream(up._text_sse(body, rid, usage), media_type="text/event-stream")
            return Response(
                {
                    "id": rid,
                    "object": "text_completion",
                    "created": int(time.time()),
                    "model": body.get("model"),
                    "choices": [
                        {"text": up.reply, "index": 0, "logprobs": None, "finish_reason": "stop"}
                    ],
                    "usage": usage,
                }
            )

        return Litestar([chat, embeddings, models, responses, completions], debug=False)

    async def _text_sse(
        self, body: dict[str, Any], rid: str, usage: dict[str, int]
    ) -> AsyncIterator[bytes]:
        def chunk(text: str | None, finish: str | None, usage: Any = None) -> bytes:
            d: dict[str, Any] = {
                "id": rid,
                "object": "text_completion",
                "created": int(time.time()),
                "model": body.get("model"),
                "choices": []
                if text is None
                else [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}],
            }
            if usage is not None:
                d["usage"] = usage
            return f"data: {json.dumps(d)}\n\n".encode()

        for i, word in enumerate(self.reply.split()):
            yield chunk((" " if i else "") + word, None)
        yield chunk("", "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            yield chunk(None, None, usage)
        yield b"data: [DONE]\n\n"

    def _message(self) -> dict[str, Any]:
        if self.tool_call:
            return {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_fake1",
                        "type": "function",
                        "function": {
                            "name": self.tool_call["name"],
                            "arguments": json.dumps(self.tool_call.get("arguments", {})),
                        },
                    }
                ],
            }
        return {"role": "assistant", "content": self.reply}

    def response_usage(self, body: dict[str, Any]) -> dict[str, int]:
        inp = body.get("input")
        items = [{"content": inp}] if isinstance(inp, str) else inp or []
        words = 0
        for item in items:
            c = item.get("content") if isinstance(item, dict) else None
            parts = [c] if isinstance(c, str) else [p.get("text", "") for p in c or []]
            words += sum(len(str(p).split()) for p in parts)
        out = len(self.reply.split())
        return {
            "input_tokens": words,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": out,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": words + out,
        }

    def _response(self, body: dict[str, Any], rid: str, status: str) -> dict[str, Any]:
        done = status == "completed"
        return {
            "id": rid,
            "object": "response",
            "created_at": int(time.time()),
            "status": status,
            "model": body.get("model"),
            "previous_response_id": body.get("previous_response_id"),
            "output": [
                {
                    "type": "message",
                    "id": f"msg_{rid}",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": self.reply, "annotations": []}],
                }
            ]
            if done
            else [],
            "usage": self.response_usage(body) if done else None,
        }

    async def _response_events(self, body: dict[str, Any], rid: str) -> AsyncIterator[bytes]:
        seq = 0

        def event(kind: str, **data: Any) -> bytes:
            nonlocal seq
            seq += 1
            payload = {"type": kind, "sequence_number": seq - 1, **data}
            return f"event: {kind}\ndata: {json.dumps(payload)}\n\n".encode()

        yield event("response.created", response=self._response(body, rid, "in_progress"))
        item = {"type": "message", "id": f"msg_{rid}", "status": "in_progress", "role": "assistant"}
        yield event("response.output_item.added", output_index=0, item={**item, "content": []})
        part = {"type": "output_text", "text": "", "annotations": []}
        yield event(
            "response.content_part.added",
            item_id=item["id"],
            output_index=0,
            content_index=0,
            part=part,
        )
        for i, word in enumerate(self.reply.split()):
            if self.cut_after is not None and i >= self.cut_after:
                return
            yield event(
                "response.output_text.delta",
                item_id=item["id"],
                output_index=0,
                content_index=0,
                delta=(" " if i else "") + word,
            )
            await asyncio.sleep(0)
        yield event(
            "response.output_text.done",
            item_id=item["id"],
            output_index=0,
            content_index=0,
            text=self.reply,
        )
        yield event("response.completed", response=self._response(body, rid, "completed"))

    async def _sse(
        self, body: dict[str, Any], rid: str, created: int, model: str
    ) -> AsyncIterator[bytes]:
        def chunk(delta: dict[str, Any], finish: str | None, usage: Any = None) -> bytes:
            d: dict[str, Any] = {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
                if delta is not None
                else [],
            }
            if usage is not None or (body.get("stream_options") or {}).get("include_usage"):
                d["usage"] = usage
            return f"data: {json.dumps(d)}\n\n".encode()

        yield chunk({"role": "assistant", "content": ""}, None)
        if self.tool_call:
            args = json.dumps(self.tool_call.get("arguments", {}))
            call = {"index": 0, "id": "call_fake1", "type": "function"}
            yield chunk(
                {"tool_calls": [{**call, "function": {"name": self.tool_call["name"]}}]}, None
            )
            for piece in (args[: len(args) // 2], args[len(args) // 2 :]):
                yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}, None)
            yield chunk({}, "tool_calls")
        else:
            for i, word in enumerate(self.reply.split()):
                if self.cut_after is not None and i >= self.cut_after:
                    return  # the connection ends mid-answer: no finish, no [DONE]
                yield chunk({"content": (" " if i else "") + word}, None)
                await asyncio.sleep(0)
            yield chunk({}, "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            yield chunk(None, None, self.usage(body))  # type: ignore[arg-type]
        yield b"data: [DONE]\n\n"


@contextmanager
def serve_in_thread(app: Any, port: int | None = None) -> Iterator[int]:
    """Serve an ASGI app with uvicorn in a background thread; yields the port."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("fake server did not start")
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(5)


@contextmanager
def fake_upstream(**kwargs: Any) -> Iterator[FakeUpstream]:
    up = FakeUpstream(**kwargs)
    with serve_in_thread(up.app()) as port:
        up.port = port
        yield up
