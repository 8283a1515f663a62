"""An OpenAI-compatible upstream for tests: a real HTTP server with latency and error injection.

Behaviour is set on the `FakeUpstream` object (shared with the server thread):
`latency_s` before answering, `fail_status` to answer with an OpenAI-format
error, `hang` to never answer. Every request body is recorded in `requests`.
Usage is deterministic: prompt tokens = words in the messages, completion
tokens = words in `reply`.
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
    port: int = 0
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
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": up.reply},
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

        return Litestar([chat, embeddings, models], debug=False)

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
        for i, word in enumerate(self.reply.split()):
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
