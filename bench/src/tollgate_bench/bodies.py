"""The fixed request and the upstream's fixed answers (plain JSON and SSE) every leg uses."""

from __future__ import annotations

from typing import Any

import orjson

UPSTREAM_MODEL = "bench-model"
MODEL = "bench"
STREAM_MODEL = "bench-stream"
MASTER_KEY = "sk-bench-master-key-0123456789"
UPSTREAM_KEY = "sk-bench-upstream"
REPLY = "Hello! This is the benchmark upstream answering with a fixed reply."


def request_body(model: str = MODEL, stream: bool = False) -> bytes:
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "Say hello in one short sentence."},
        ],
        "max_tokens": 32,
        "temperature": 0,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return orjson.dumps(body)


USAGE = {"prompt_tokens": 21, "completion_tokens": 14, "total_tokens": 35}


def completion() -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-bench0001",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": UPSTREAM_MODEL,
            "system_fingerprint": "fp_bench",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": REPLY, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
        }
    )


def sse_stream() -> bytes:
    """A streamed completion: role, a few content deltas, finish, usage, [DONE]."""

    def chunk(delta: dict[str, Any], finish: str | None = None, usage: Any = None) -> bytes:
        c: dict[str, Any] = {
            "id": "chatcmpl-bench0002",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": UPSTREAM_MODEL,
            "system_fingerprint": "fp_bench",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
            if usage is None
            else [],
        }
        if usage is not None:
            c["usage"] = usage
        return b"data: " + orjson.dumps(c) + b"\n\n"

    words = REPLY.split(" ")
    parts = [chunk({"role": "assistant", "content": ""})]
    parts += [chunk({"content": (w if i == 0 else " " + w)}) for i, w in enumerate(words)]
    parts.append(chunk({}, finish="stop"))
    parts.append(chunk({}, usage=USAGE))
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)
