"""Token usage: read from a response, rebuilt from a stream's chunks, estimated where the
upstream never said, hidden when unasked."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import orjson

# OpenAI's rule of thumb for English text, and the tokens each chat message's framing takes.
CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    # Prompt tokens written to the provider's prompt cache (Anthropic, Bedrock): priced apart.
    cache_creation_tokens: int = 0


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


# The field names of a usage object: input tokens, output tokens, and their details.
CHAT_USAGE = (
    "prompt_tokens",
    "completion_tokens",
    "prompt_tokens_details",
    "completion_tokens_details",
)
RESPONSES_USAGE = ("input_tokens", "output_tokens", "input_tokens_details", "output_tokens_details")


def usage_from(raw: Any, fields: tuple[str, str, str, str] = CHAT_USAGE) -> Usage:
    """OpenAI's usage object (with its token details) as plain integers; `fields` names its
    parts (chat completions' by default, or the Responses API's)."""
    if not isinstance(raw, dict):
        return Usage()
    prompt = _int(raw.get(fields[0]))
    completion = _int(raw.get(fields[1]))
    pdet = raw.get(fields[2]) or {}
    cdet = raw.get(fields[3]) or {}
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=_int(raw.get("total_tokens")) or prompt + completion,
        cached_tokens=_int(pdet.get("cached_tokens")) if isinstance(pdet, dict) else 0,
        reasoning_tokens=_int(cdet.get("reasoning_tokens")) if isinstance(cdet, dict) else 0,
        cache_creation_tokens=(
            _int(pdet.get("cache_creation_tokens")) if isinstance(pdet, dict) else 0
        )
        or _int(raw.get("cache_creation_input_tokens")),
    )


def _chars(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if value is None:
        return 0
    try:
        return len(orjson.dumps(value))
    except TypeError:
        return len(str(value))


def estimate_text_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def estimate_prompt_tokens(messages: Any) -> int:
    """Tokens of a chat prompt (or an embeddings input) estimated from its characters."""
    if isinstance(messages, list):
        chars = 0
        framing = 0
        for m in messages:
            if isinstance(m, dict):
                framing += TOKENS_PER_MESSAGE
                chars += sum(_chars(v) for k, v in m.items() if k != "role")
            else:
                chars += _chars(m)
        return math.ceil(chars / CHARS_PER_TOKEN) + framing
    return math.ceil(_chars(messages) / CHARS_PER_TOKEN)


@dataclass
class StreamAccumulator:
    """Rebuilds the whole response from streamed chunks, for the event and for costing."""

    response_id: str | None = None
    model: str | None = None
    created: int | None = None
    parts: list[str] = field(default_factory=list)
    role: str = "assistant"
    finish_reasons: list[str] = field(default_factory=list)
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    usage: Usage | None = None

    def feed(self, chunk: dict[str, Any]) -> None:
        self.response_id = self.response_id or chunk.get("id")
        self.model = self.model or chunk.get("model")
        self.created = self.created or chunk.get("created")
        if chunk.get("usage"):
            self.usage = usage_from(chunk["usage"])
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                self.parts.append(delta["content"])
            if isinstance(delta.get("role"), str):
                self.role = delta["role"]
            for tc in delta.get("tool_calls") or ():
                slot = self.tool_calls.setdefault(
                    tc.get("index", 0), {"type": "function", "function": {"arguments": ""}}
                )
                if tc.get("id"):
                    slot["id"] = tc["id"]
                fn = tc.get("function") or {}
                if fn.get("name"):
                    slot["function"]["name"] = fn["name"]
                if fn.get("arguments"):
                    slot["function"]["arguments"] += fn["arguments"]
            if choice.get("finish_reason"):
                self.finish_reasons.append(choice["finish_reason"])

    def estimated_completion_tokens(self) -> int:
        """What the streamed text and tool-call arguments so far amount to, estimated."""
        text = "".join(self.parts) + "".join(
            tc["function"].get("name", "") + tc["function"]["arguments"]
            for tc in self.tool_calls.values()
        )
        return estimate_text_tokens(text)

    def response(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": self.role, "content": "".join(self.parts)}
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        return {
            "id": self.response_id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": self.finish_reasons[-1] if self.finish_reasons else None,
                }
            ],
        }


def strip_unrequested_usage(chunk: dict[str, Any]) -> dict[str, Any] | None:
    """Remove what the client did not ask for: the usage field, and usage-only chunks."""
    if "usage" not in chunk:
        return chunk
    if not chunk.get("choices"):
        return None
    return {k: v for k, v in chunk.items() if k != "usage"}
