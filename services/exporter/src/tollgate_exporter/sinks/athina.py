"""Athina sink: each call is one inference log posted to Athina's logging API.

`POST {ATHINA_BASE_URL}/api/v1/log/inference` (default `https://log.athina.ai`) with the
`athina-api-key` header, one call per request: `language_model_id`, `prompt`
(messages), `response` (the OpenAI response), `prompt_tokens`, `completion_tokens`,
`total_tokens`, `cost`, `response_time` (ms), `external_reference_id` (request id),
`session_id`, `customer_user_id`, `tags`, `custom_attributes` (key alias, team,
error) and the metadata keys LiteLLM forwards (`environment`, `prompt_slug`,
`customer_id`, `user_query`, `context`, ...).

Credentials: `athina_api_key`, `athina_base_url` (callback vars) else `ATHINA_API_KEY`,
`ATHINA_BASE_URL`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tollgate_exporter.destinations import Destination, digest, safe_url
from tollgate_exporter.sinks._http_api import (
    Credentials,
    Part,
    Post,
    RenderContext,
    base_url,
    create_with,
    end_user,
    error_text,
    latency_ms,
    model_of,
    prompt,
    response_body,
)
from tollgate_exporter.sinks.base import ExportItem, SinkType

DEFAULT_BASE = "https://log.athina.ai"
# Metadata keys LiteLLM copies into the log as they are.
METADATA_KEYS = (
    "environment",
    "prompt_slug",
    "customer_id",
    "customer_user_id",
    "session_id",
    "external_reference_id",
    "context",
    "expected_response",
    "user_query",
    "tags",
    "user_feedback",
    "model_options",
    "custom_attributes",
)


def destination(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    c = Credentials(
        vars_,
        env,
        (
            "athina_api_key",
            "athina_base_url",
        ),
    )
    key = c.secret("athina_api_key", "ATHINA_API_KEY")
    if not key:
        return "athina needs athina_api_key (or ATHINA_API_KEY)"
    base = base_url(c.get("athina_base_url", "ATHINA_BASE_URL") or DEFAULT_BASE)
    return Destination(
        "athina",
        f"athina:{digest(base, key)}",
        f"athina {safe_url(base)}",
        {"base": base, "key": key},
    )


def log(item: ExportItem) -> dict[str, Any]:
    event = item.event
    body: dict[str, Any] = {
        "language_model_id": model_of(event),
        "prompt": prompt(item),
        "response": response_body(item),
        "prompt_tokens": event.prompt_tokens,
        "completion_tokens": event.completion_tokens,
        "total_tokens": event.total_tokens,
        "cost": float(event.spend),
        "response_time": round(event.total_latency_ms),
        "external_reference_id": event.request_id,
        "session_id": event.session_id,
        "customer_user_id": end_user(event),
        "tags": list(event.tags),
        "custom_attributes": {
            "key_alias": event.key_alias,
            "team_id": event.team_id,
            "team_alias": event.team_alias,
            "trace_id": event.trace_id,
            "error": error_text(event),
            "latency_ms": latency_ms(event),
        },
    }
    for key in METADATA_KEYS:
        if key in event.metadata:
            body[key] = event.metadata[key]
    return {k: v for k, v in body.items() if v is not None}


async def render(ctx: RenderContext, dest: Destination, items: Sequence[ExportItem]) -> list[Part]:
    o = dest.options
    return [
        Post(
            f"{o['base']}/api/v1/log/inference",
            log(item),
            (i,),
            {"athina-api-key": o["key"]},
            what="athina",
        )
        for i, item in enumerate(items)
    ]


SINK = SinkType(
    kind="athina", names=("athina",), destination=destination, create=create_with("athina", render)
)
