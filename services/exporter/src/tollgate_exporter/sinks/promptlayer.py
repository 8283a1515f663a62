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

from collections.abc import Mapping, Sequence
from typing import Any

from tollgate_exporter.content import REDACTED
from tollgate_exporter.destinations import Destination, digest, safe_url
from tollgate_exporter.sinks._http_api import (
    Credentials,
    Part,
    Post,
    RenderContext,
    base_url,
    completion,
    create_with,
    error_text,
    failed,
    iso,
    metadata,
    model_of,
)
from tollgate_exporter.sinks.base import ExportItem, SinkType

DEFAULT_BASE = "https://api.promptlayer.com"


def destination(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    c = Credentials(
        vars_,
        env,
        (
            "promptlayer_api_key",
            "promptlayer_api_base",
        ),
    )
    key = c.secret("promptlayer_api_key", "PROMPTLAYER_API_KEY")
    if not key:
        return "promptlayer needs promptlayer_api_key (or PROMPTLAYER_API_KEY)"
    base = base_url(c.get("promptlayer_api_base", "PROMPTLAYER_API_BASE") or DEFAULT_BASE)
    return Destination(
        "promptlayer",
        f"promptlayer:{digest(base, key)}",
        f"promptlayer {safe_url(base)}",
        {"base": base, "key": key},
    )


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


async def render(ctx: RenderContext, dest: Destination, items: Sequence[ExportItem]) -> list[Part]:
    o = dest.options
    return [
        Post(
            f"{o['base']}/log-request", log(item), (i,), {"X-API-KEY": o["key"]}, what="promptlayer"
        )
        for i, item in enumerate(items)
    ]


SINK = SinkType(
    kind="promptlayer",
    names=("promptlayer",),
    destination=destination,
    create=create_with("promptlayer", render),
)
