"""The built-in mock provider: answers `mock_response` calls (the offline `demo` model) like an
OpenAI-compatible upstream, plain, streamed and embeddings, without a network."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any


def estimate_tokens(text: str) -> int:
    """A rough count for the mock provider (about four characters per token)."""
    return max(1, (len(text) + 3) // 4) if text else 0


def mock_completion(
    model: str, content: str, messages: list[Any], response_id: str, created: int
) -> dict[str, Any]:
    texts = [m["content"] for m in messages if isinstance(m, dict)]
    prompt = sum(estimate_tokens(t) for t in texts if isinstance(t, str))
    completion = estimate_tokens(content)
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": content},
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def mock_embedding(model: str, inputs: list[Any]) -> dict[str, Any]:
    """A fixed small vector per input, with usage like a real provider's."""
    tokens = sum(estimate_tokens(x) if isinstance(x, str) else len(x) for x in inputs)
    data = [
        {"object": "embedding", "index": i, "embedding": [0.0, 0.5, 1.0]}
        for i in range(len(inputs))
    ]
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def mock_chunks(completion: dict[str, Any]) -> list[dict[str, Any]]:
    """The same completion as stream chunks (word by word), usage in the last one."""
    base = {k: completion[k] for k in ("id", "created", "model")}
    base["object"] = "chat.completion.chunk"
    words = completion["choices"][0]["message"]["content"].split(" ")
    out = [
        {
            **base,
            "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
            ],
        }
    ]
    for i, w in enumerate(words):
        out.append(
            {
                **base,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"content": (" " if i else "") + w},
                        "finish_reason": None,
                    }
                ],
            }
        )
    out.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    out.append({**base, "choices": [], "usage": completion["usage"]})
    return out


class MockStream:
    """The mock's chunks behind the interface of `openai.ChatStream` (already open)."""

    def __init__(self, chunks: list[dict[str, Any]]) -> None:
        self._chunks = chunks

    async def chunks(self) -> AsyncIterator[dict[str, Any] | None]:
        """Each chunk; None marks the end, as `[DONE]` does upstream."""
        for chunk in self._chunks:
            yield chunk
        yield None

    async def close(self) -> None:
        return None
