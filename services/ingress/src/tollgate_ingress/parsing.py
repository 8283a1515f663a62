"""Request parsing: an OpenAI chat or embeddings body validated into a ChatRequest."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tollgate_shared import names
from tollgate_shared.errors import error_json

# Request fields LiteLLM understands and upstreams do not: never forwarded.
GATEWAY_FIELDS = frozenset(
    {
        "metadata",
        "litellm_session_id",
        "tags",
        "mock_response",
        "litellm_metadata",
        "litellm_trace_id",
        "proxy_server_request",
    }
)
# How deep a request body may nest. Every consumer's JSON parser refuses documents deeper
# than 200 levels, and an event wraps the body a few levels down: a body nested deeper
# than this could be answered but never costed, so it is refused here, naming the field.
MAX_DEPTH = 64
# LiteLLM's `metadata` travels in every event of the call (and is stored with it).
MAX_METADATA_BYTES = 1024 * 1024

# Fields that describe the call rather than tune the model.
_NOT_PARAMETERS = frozenset({"model", "messages", "input", "stream", "stream_options", "user"})


class BadRequestError(Exception):
    """An invalid request body: OpenAI's invalid_request_error naming the parameter."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class NotFoundError(Exception):
    """An id this caller cannot see: OpenAI's 404, naming the parameter."""

    def __init__(self, message: str, param: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> bytes:
        return error_json(
            self.message, 404, param=self.param, type_="invalid_request_error", code=self.code
        )


@dataclass(frozen=True)
class ChatRequest:
    model: str
    stream: bool
    client_wants_usage: bool
    upstream_body: dict[str, Any]
    messages: list[Any]
    metadata: dict[str, Any]
    tags: list[str]
    session_id: str | None
    trace_id: str | None
    end_user: str | None
    model_parameters: dict[str, Any]
    mock_response: Any = None
    call_type: str = "acompletion"


def _str_list(value: Any, param: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequestError(f"{param} must be a list of strings", param)
    return list(value)


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether containers nest more than `limit` levels below `value` (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _check_depth(raw: bytes, body: dict[str, Any]) -> None:
    # A body with fewer brackets than the limit cannot be that deep: the common case
    # costs two C-level counts, not a walk.
    if raw.count(b"{") + raw.count(b"[") <= MAX_DEPTH:
        return
    for name, value in body.items():
        if _deeper_than(value, MAX_DEPTH - 1):
            raise BadRequestError(
                f"{name} is nested deeper than {MAX_DEPTH} levels; flatten it", name
            )


def load_object(raw: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object (any LLM route's)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequestError("request body must be a JSON object")
    return body


def _load(raw: bytes) -> dict[str, Any]:
    body = load_object(raw)
    _check_depth(raw, body)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequestError("model is required and must be a string", "model")
    return body


def _request(
    body: dict[str, Any],
    headers: Mapping[str, str],
    call_type: str,
    content: list[Any],
    stream: bool = False,
    client_wants_usage: bool = False,
    *,
    raw_size: int,
) -> ChatRequest:
    """What every LLM route shares: LiteLLM's metadata, tags, session and end user."""
    metadata = body.get("metadata") or body.get("litellm_metadata") or {}
    if not isinstance(metadata, dict):
        raise BadRequestError("metadata must be an object", "metadata")
    # Only a body larger than the limit can hold metadata larger than it.
    if raw_size > MAX_METADATA_BYTES and len(orjson.dumps(metadata)) > MAX_METADATA_BYTES:
        raise BadRequestError(
            f"metadata is larger than {MAX_METADATA_BYTES // 1024} KiB; send less", "metadata"
        )
    tags = _str_list(metadata.get("tags"), "metadata.tags") + _str_list(body.get("tags"), "tags")
    header_tags = headers.get("x-litellm-tags")
    if header_tags:
        tags += [t.strip() for t in header_tags.split(",") if t.strip()]
    session_id = (
        body.get("litellm_session_id")
        or metadata.get("session_id")
        or headers.get(names.HDR_SESSION_ID)
    )
    if session_id is not None and not isinstance(session_id, str):
        raise BadRequestError("litellm_session_id must be a string", "litellm_session_id")
    trace_id = metadata.get("trace_id") or body.get("litellm_trace_id")
    end_user = body.get("user")
    if end_user is not None and not isinstance(end_user, str):
        raise BadRequestError("user must be a string", "user")
    upstream = {k: v for k, v in body.items() if k not in GATEWAY_FIELDS}
    if stream:
        # Usage is how a streamed call is costed: always ask; strip it later if unasked.
        upstream["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    params = {k: v for k, v in upstream.items() if k not in _NOT_PARAMETERS}
    return ChatRequest(
        model=body["model"],
        stream=stream,
        client_wants_usage=client_wants_usage,
        upstream_body=upstream,
        messages=content,
        metadata=metadata,
        tags=list(dict.fromkeys(tags)),
        session_id=str(session_id) if session_id else None,
        trace_id=str(trace_id) if trace_id else None,
        end_user=end_user,
        model_parameters=params,
        mock_response=body.get("mock_response"),
        call_type=call_type,
    )


def parse_chat_request(raw: bytes, headers: Mapping[str, str]) -> ChatRequest:
    """Validate what the gateway relies on; everything else passes through to the upstream."""
    body = _load(raw)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequestError("messages must be a non-empty list", "messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise BadRequestError(f"messages[{i}] must be an object with a role", f"messages[{i}]")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequestError("stream must be a boolean", "stream")
    stream_options = body.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        raise BadRequestError("stream_options must be an object", "stream_options")
    wants_usage = bool((stream_options or {}).get("include_usage"))
    return _request(body, headers, "acompletion", messages, stream, wants_usage, raw_size=len(raw))


def parse_embedding_request(raw: bytes, headers: Mapping[str, str]) -> ChatRequest:
    """An OpenAI embeddings request; `input` is a string or a non-empty list."""
    body = _load(raw)
    inp = body.get("input")
    if isinstance(inp, str) and inp:
        content: list[Any] = [inp]
    elif isinstance(inp, list) and inp:
        content = inp
    else:
        raise BadRequestError("input must be a non-empty string or list", "input")
    return _request(body, headers, "aembedding", content, raw_size=len(raw))
