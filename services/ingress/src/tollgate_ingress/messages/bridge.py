"""Anthropic Messages <-> OpenAI chat completions: the request, the answer, the stream's
events and the error document."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from tollgate_ingress.parsing import BadRequestError, load_object

_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
# Request fields the gateway reads (LiteLLM's), carried into the chat body it parses.
_GATEWAY_FIELDS = ("litellm_session_id", "tags", "mock_response", "litellm_metadata")


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(
        str(b.get("text", "")) for b in content or () if isinstance(b, dict) and "text" in b
    )


def _image(block: Mapping[str, Any]) -> dict[str, Any]:
    src = block.get("source") or {}
    if src.get("type") == "base64":
        url = f"data:{src.get('media_type')};base64,{src.get('data')}"
    else:
        url = str(src.get("url", ""))
    return {"type": "image_url", "image_url": {"url": url}}


def _message(i: int, m: Any) -> list[dict[str, Any]]:
    where = f"messages[{i}]"
    if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
        raise BadRequestError(f"{where}.role must be 'user' or 'assistant'", f"{where}.role")
    role, content = m["role"], m.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise BadRequestError(f"{where}.content must be a string or a list", f"{where}.content")
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": str(block.get("text", ""))})
        elif kind == "image":
            parts.append(_image(block))
        elif kind == "tool_use" and role == "assistant":
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
        elif kind == "tool_result" and role == "user":
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": block.get("tool_use_id"),
                    "content": _text_of(block.get("content")),
                }
            )
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            raise BadRequestError(
                f"{where}.content[{j}].type: {kind!r} is not supported here",
                f"{where}.content[{j}].type",
            )
    if parts or (role == "assistant" and calls):
        text_only = all(p["type"] == "text" for p in parts)
        msg: dict[str, Any] = {
            "role": role,
            "content": "".join(p["text"] for p in parts) if text_only else parts,
        }
        if calls:
            msg["tool_calls"] = calls
            msg["content"] = msg["content"] or None
        out.append(msg)
    return out


def _tool_choice(choice: Any) -> Any:
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name")}}
    return {"auto": "auto", "any": "required", "none": "none"}.get(str(kind), "auto")


def load_body(raw: bytes) -> dict[str, Any]:
    """An Anthropic Messages request body, checked to be a JSON object."""
    return load_object(raw)


def chat_body(body: dict[str, Any]) -> dict[str, Any]:
    """The chat completions request that answers an Anthropic Messages request."""
    if not isinstance(body.get("model"), str):
        raise BadRequestError("model: Field required", "model")
    if not isinstance(body.get("max_tokens"), int):
        raise BadRequestError("max_tokens: Field required", "max_tokens")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequestError("messages: at least one message is required", "messages")
    chat: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        chat.append({"role": "system", "content": _text_of(system)})
    for i, m in enumerate(messages):
        chat += _message(i, m)
    out: dict[str, Any] = {
        "model": body["model"],
        "messages": chat,
        "max_tokens": body["max_tokens"],
    }
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            out[name] = body[name]
    if body.get("stop_sequences"):
        out["stop"] = body["stop_sequences"]
    if body.get("tools"):
        out["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.get("name"),
                    "description": t.get("description", ""),
                    "parameters": t.get("input_schema") or {"type": "object"},
                },
            }
            for t in body["tools"]
            if isinstance(t, dict)
        ]
        if body.get("tool_choice") is not None:
            out["tool_choice"] = _tool_choice(body["tool_choice"])
    metadata = body.get("metadata")
    if isinstance(metadata, dict):
        if isinstance(metadata.get("user_id"), str):
            out["user"] = metadata["user_id"]
        out["metadata"] = {k: v for k, v in metadata.items() if k != "user_id"}
    for name in _GATEWAY_FIELDS:
        if name in body:
            out[name] = body[name]
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def _usage(usage: Any) -> dict[str, int]:
    """OpenAI's usage in Anthropic's terms, where input tokens exclude the cache's."""
    u = usage if isinstance(usage, dict) else {}
    details = u.get("prompt_tokens_details") or {}
    read = int(details.get("cached_tokens") or 0)
    written = int(details.get("cache_creation_tokens") or u.get("cache_creation_input_tokens") or 0)
    return {
        "input_tokens": max(int(u.get("prompt_tokens") or 0) - read - written, 0),
        "output_tokens": int(u.get("completion_tokens") or 0),
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": written,
    }


def _tool_input(arguments: str) -> Any:
    try:
        return orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return {"_raw": arguments}


def message_from_chat(chat: Mapping[str, Any], model: str) -> dict[str, Any]:
    """A chat completion as Anthropic's Message."""
    choice = (chat.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    text = _text_of(msg.get("content"))
    if text:
        content.append({"type": "text", "text": text})
    for tc in msg.get("tool_calls") or ():
        fn = tc.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": tc.get("id"),
                "name": fn.get("name"),
                "input": _tool_input(fn.get("arguments", "")),
            }
        )
    return {
        "id": f"msg_{chat.get('id') or ''}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _STOP.get(str(choice.get("finish_reason")), "end_turn"),
        "stop_sequence": None,
        "usage": _usage(chat.get("usage")),
    }


def error_from_openai(status: int, body: bytes) -> bytes:
    """An OpenAI-format error as Anthropic's error document."""
    try:
        err = orjson.loads(body).get("error") or {}
    except (orjson.JSONDecodeError, AttributeError):
        err = {}
    kind = _ERROR_TYPES.get(status, "api_error")
    return orjson.dumps(
        {"type": "error", "error": {"type": kind, "message": str(err.get("message", body[:500]))}}
    )


def _sse(kind: str, data: Mapping[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


@dataclass
class StreamTranslator:
    """Chat completion chunks as Anthropic's stream events."""

    model: str
    started: bool = False
    block: int = -1
    block_kind: str | None = None
    tools: dict[int, int] = field(default_factory=dict)
    stop: str | None = None
    usage: dict[str, int] = field(default_factory=dict)

    def _start(self, chunk: Mapping[str, Any]) -> list[bytes]:
        self.started = True
        message: dict[str, Any] = {
            "id": f"msg_{chunk.get('id') or ''}",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return [_sse("message_start", {"message": message})]

    def _open(self, kind: str, block: dict[str, Any]) -> list[bytes]:
        out = self._close()
        self.block += 1
        self.block_kind = kind
        return [*out, _sse("content_block_start", {"index": self.block, "content_block": block})]

    def _close(self) -> list[bytes]:
        if self.block_kind is None:
            return []
        self.block_kind = None
        return [_sse("content_block_stop", {"index": self.block})]

    def feed(self, chunk: Mapping[str, Any]) -> list[bytes]:
        out = [] if self.started else self._start(chunk)
        if chunk.get("usage"):
            self.usage = _usage(chunk["usage"])
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if isinstance(text, str) and text:
                if self.block_kind != "text":
                    out += self._open("text", {"type": "text", "text": ""})
                out.append(
                    _sse(
                        "content_block_delta",
                        {"index": self.block, "delta": {"type": "text_delta", "text": text}},
                    )
                )
            for tc in delta.get("tool_calls") or ():
                fn = tc.get("function") or {}
                index = tc.get("index", 0)
                if index not in self.tools:
                    out += self._open(
                        "tool_use",
                        {
                            "type": "tool_use",
                            "id": tc.get("id"),
                            "name": fn.get("name"),
                            "input": {},
                        },
                    )
                    self.tools[index] = self.block
                if fn.get("arguments"):
                    out.append(
                        _sse(
                            "content_block_delta",
                            {
                                "index": self.tools[index],
                                "delta": {
                                    "type": "input_json_delta",
                                    "partial_json": fn["arguments"],
                                },
                            },
                        )
                    )
            if choice.get("finish_reason"):
                self.stop = _STOP.get(choice["finish_reason"], "end_turn")
        return out

    def finish(self) -> list[bytes]:
        out = [] if self.started else self._start({})
        out += self._close()
        usage = self.usage or {"input_tokens": 0, "output_tokens": 0}
        return [
            *out,
            _sse(
                "message_delta",
                {
                    "delta": {"stop_reason": self.stop or "end_turn", "stop_sequence": None},
                    "usage": usage,
                },
            ),
            _sse("message_stop", {}),
        ]

    @staticmethod
    def error(status: int, message: str) -> bytes:
        kind = _ERROR_TYPES.get(status, "api_error")
        return _sse("error", {"error": {"type": kind, "message": message}})
