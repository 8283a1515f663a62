"""Pure request logic: parse an OpenAI chat request, account its usage, and build its events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from tollgate_ingress.auth import Identity
from tollgate_ingress.routing import Deployment
from tollgate_shared import names
from tollgate_shared.events import LlmRequestCompleted, LlmRequestFailed, LlmRequestStarted

PRODUCER = "ingress"
# Request fields LiteLLM understands and upstreams do not: never forwarded.
_GATEWAY_FIELDS = frozenset(
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
# Fields that describe the call rather than tune the model.
_NOT_PARAMETERS = frozenset({"model", "messages", "input", "stream", "stream_options", "user"})


class BadRequestError(Exception):
    """An invalid request body: OpenAI's invalid_request_error naming the parameter."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


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


def _load(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequestError("request body must be a JSON object")
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
) -> ChatRequest:
    """What every LLM route shares: LiteLLM's metadata, tags, session and end user."""
    metadata = body.get("metadata") or body.get("litellm_metadata") or {}
    if not isinstance(metadata, dict):
        raise BadRequestError("metadata must be an object", "metadata")
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
    upstream = {k: v for k, v in body.items() if k not in _GATEWAY_FIELDS}
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
    return _request(body, headers, "acompletion", messages, stream, wants_usage)


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
    return _request(body, headers, "aembedding", content)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def usage_from(raw: Any) -> Usage:
    """OpenAI's usage object (with its token details) as plain integers."""
    if not isinstance(raw, dict):
        return Usage()
    prompt = _int(raw.get("prompt_tokens"))
    completion = _int(raw.get("completion_tokens"))
    pdet = raw.get("prompt_tokens_details") or {}
    cdet = raw.get("completion_tokens_details") or {}
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=_int(raw.get("total_tokens")) or prompt + completion,
        cached_tokens=_int(pdet.get("cached_tokens")) if isinstance(pdet, dict) else 0,
        reasoning_tokens=_int(cdet.get("reasoning_tokens")) if isinstance(cdet, dict) else 0,
    )


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


def without_vectors(response: dict[str, Any]) -> dict[str, Any]:
    """An embeddings response for logging: the vectors' sizes, not the vectors."""
    data = [
        {"index": d.get("index"), "embedding_length": len(d.get("embedding") or ())}
        for d in response.get("data") or ()
        if isinstance(d, dict)
    ]
    return {**response, "data": data}


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


@dataclass
class Call:
    """What ingress knows about one call while it runs; becomes its events."""

    request_id: str
    identity: Identity
    request: ChatRequest
    start_time: datetime
    deployment: Deployment | None = None
    requester_ip: str | None = None
    user_agent: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None

    def _common(self) -> dict[str, Any]:
        ident, req, dep = self.identity, self.request, self.deployment
        return {
            "producer": PRODUCER,
            "traceparent": self.traceparent,
            "tracestate": self.tracestate,
            "request_id": self.request_id,
            "call_type": self.request.call_type,
            "api_key_hash": ident.api_key_hash,
            "key_alias": ident.key_alias,
            "user_id": ident.user_id,
            "user_email": ident.user_email,
            "team_id": ident.team_id,
            "team_alias": ident.team_alias,
            "end_user": req.end_user,
            "requested_model": req.model,
            "model_group": req.model if dep else None,
            "model_id": dep.model_id if dep else None,
            "model": dep.params.upstream_model if dep else None,
            "custom_llm_provider": dep.params.provider if dep else None,
            "api_base": (dep.params.api_base if dep else None),
            "region": dep.region if dep else None,
            "start_time": self.start_time,
            "stream": req.stream,
            "session_id": req.session_id,
            "trace_id": req.trace_id,
            "metadata": req.metadata,
            "tags": req.tags,
            "requester_ip": self.requester_ip,
            "user_agent": self.user_agent,
            "model_parameters": req.model_parameters,
        }

    def started(self) -> LlmRequestStarted:
        return LlmRequestStarted(**self._common())

    def _finished(
        self, elapsed_s: float, upstream_s: float | None, first_token_s: float | None
    ) -> dict[str, Any]:
        end = self.start_time + timedelta(seconds=elapsed_s)
        total_ms = elapsed_s * 1000
        upstream_ms = upstream_s * 1000 if upstream_s is not None else None
        return {
            **self._common(),
            "end_time": end,
            "completion_start_time": (
                self.start_time + timedelta(seconds=first_token_s)
                if first_token_s is not None
                else None
            ),
            "total_latency_ms": round(total_ms, 3),
            "upstream_latency_ms": round(upstream_ms, 3) if upstream_ms is not None else None,
            "overhead_latency_ms": (
                round(max(total_ms - upstream_ms, 0.0), 3) if upstream_ms is not None else None
            ),
            "messages": self.request.messages,
            "proxy_server_request": {
                "body": {**self.request.upstream_body, "metadata": self.request.metadata}
            },
        }

    def completed(
        self,
        *,
        elapsed_s: float,
        upstream_s: float | None,
        first_token_s: float | None,
        usage: Usage,
        spend: Decimal,
        response: dict[str, Any],
        warnings: list[str],
    ) -> LlmRequestCompleted:
        finish = [
            c.get("finish_reason")
            for c in response.get("choices") or ()
            if isinstance(c, dict) and c.get("finish_reason")
        ]
        return LlmRequestCompleted(
            **self._finished(elapsed_s, upstream_s, first_token_s),
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
            cached_tokens=usage.cached_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            spend=spend,
            warnings=warnings,
            response=response,
            response_id=response.get("id"),
            response_model=response.get("model"),
            finish_reasons=finish,
        )

    def failed(
        self,
        *,
        elapsed_s: float,
        upstream_s: float | None,
        error_class: str,
        error_message: str,
        status_code: int,
        upstream_status_code: int | None,
        upstream_reachable: bool,
        error_code: str | None = None,
        response: Any = None,
    ) -> LlmRequestFailed:
        return LlmRequestFailed(
            **self._finished(elapsed_s, upstream_s, None),
            error_class=error_class,
            error_message=error_message[:4000],
            error_code=error_code,
            status_code=status_code,
            upstream_status_code=upstream_status_code,
            upstream_reachable=upstream_reachable,
            response=response,
        )


def now_utc() -> datetime:
    return datetime.now(UTC)
