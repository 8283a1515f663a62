"""PromptLayer sink: each call is one request log posted to PromptLayer's `log-request` API.

`POST {PROMPTLAYER_API_BASE}/log-request` (default `https://api.promptlayer.com`) with the
`X-API-KEY` header, one call per request: `provider`, `model`, `input` / `output` as
chat prompt blueprints (`{"type": "chat", "messages": [{"role", "content": [{"type":
"text", "text"}]}]}`), `request_start_time`, `request_end_time`, `parameters`, `tags`,
`metadata` (string values: key alias, team, user, session, request id, cost, and
the caller's metadata), `input_tokens`, `output_tokens`, `price`, `function_name`,
`status` (`SUCCESS` / `ERROR`) and `error_message`.

Credentials: `promptlayer_api_key`, `promptlayer_api_base` (callback vars) else
`PROMPTLAYER_API_KEY`, `PROMPTLAYER_API_BASE`.
"""

from __future__ import annotations

from typing import Any

from tollgate_exporter.content import REDACTED
from tollgate_exporter.sinks._http_api import (
    HttpApi,
    completion,
    endpoint,
    error_text,
    failed,
    iso,
    key,
    metadata,
    model_of,
)
from tollgate_exporter.sinks.base import ExportItem

DEFAULT_BASE = "https://api.promptlayer.com"


def _content(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [
            p
            if isinstance(p, dict) and p.get("type") == "text"
            else {"type": "text", "text": str(p)}
            for p in content
        ]
    return [{"type": "text", "text": str(content)}]


def _chat(messages: Any) -> dict[str, Any]:
    if messages == REDACTED or not isinstance(messages, list):
        messages = [{"role": "user", "content": REDACTED}] if messages == REDACTED else []
    return {
        "type": "chat",
        "messages": [
            {"role": m.get("role", "user"), "content": _content(m.get("content"))}
            for m in messages
            if isinstance(m, dict)
        ],
    }


def log(item: ExportItem) -> dict[str, Any]:
    event = item.event
    meta = {k: str(v) for k, v in metadata(item).items() if isinstance(v, str | int | float | bool)}
    meta.update(
        {
            k: str(v)
            for k, v in {
                "key_alias": event.key_alias,
                "team_id": event.team_id,
                "user_id": event.user_id,
            }.items()
            if v
        }
    )
    out = completion(item)
    messages = REDACTED if item.redacted else event.messages
    body = {
        "provider": event.custom_llm_provider or "openai",
        "model": model_of(event),
        "input": _chat(messages),
        "output": _chat([out] if isinstance(out, dict) else []),
        "request_start_time": iso(event.start_time),
        "request_end_time": iso(event.end_time),
        "parameters": {
            k: v
            for k, v in event.model_parameters.items()
            if isinstance(v, str | int | float | bool)
        },
        "tags": list(event.tags),
        "metadata": meta,
        "input_tokens": event.prompt_tokens,
        "output_tokens": event.completion_tokens,
        "price": float(event.spend),
        "function_name": "openai.chat.completions.create",
        "status": "ERROR" if failed(item) else "SUCCESS",
        "error_message": error_text(event),
    }
    return {k: v for k, v in body.items() if v is not None}


API = HttpApi(
    "promptlayer",
    {
        "key": key("promptlayer_api_key", "PROMPTLAYER_API_KEY"),
        "base": endpoint("promptlayer_api_base", "PROMPTLAYER_API_BASE", default=DEFAULT_BASE),
    },
    auth=("X-API-KEY", "{key}"),
    path="/log-request",
    payload=lambda item, _: log(item),
)
SINK = API.sink
