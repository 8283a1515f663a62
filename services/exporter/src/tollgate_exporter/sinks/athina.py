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

from typing import Any

from tollgate_exporter.sinks._http_api import (
    HttpApi,
    end_user,
    endpoint,
    error_text,
    key,
    latency_ms,
    model_of,
    prompt,
    response_body,
)
from tollgate_exporter.sinks.base import ExportItem

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
    for name in METADATA_KEYS:
        if name in event.metadata:
            body[name] = event.metadata[name]
    return {k: v for k, v in body.items() if v is not None}


API = HttpApi(
    "athina",
    {
        "key": key("athina_api_key", "ATHINA_API_KEY"),
        "base": endpoint("athina_base_url", "ATHINA_BASE_URL", default=DEFAULT_BASE),
    },
    auth=("athina-api-key", "{key}"),
    path="/api/v1/log/inference",
    payload=lambda item, _: log(item),
)
SINK = API.sink
