"""Humanloop sink: each call is one Prompt log posted to Humanloop's log API.

`POST {HUMANLOOP_BASE_URL}/prompts/log` (default `https://api.humanloop.com/v5`) with
the `X-API-KEY` header, one call per request: `path` (`metadata.humanloop_path`, else
`prompt_path`, else `tollgate/<model group>`), `prompt: {model, provider, temperature,
max_tokens, ...}`, `messages`, `output_message`, `prompt_tokens`, `output_tokens`,
`prompt_cost`/`output_cost` (the call's cost as `prompt_cost` when not split),
`start_time`, `end_time`, `provider_latency` (s), `error`, `user`, `metadata`
(key alias, team, tags, session, request id) and `source_datapoint_id`.

Credentials: `humanloop_api_key`, `humanloop_base_url` (callback vars) else
`HUMANLOOP_API_KEY`, `HUMANLOOP_BASE_URL`.
"""

from __future__ import annotations

from typing import Any

from tollgate_exporter.sinks._http_api import (
    HttpApi,
    Options,
    completion,
    end_user,
    endpoint,
    error_text,
    first,
    iso,
    key,
    metadata,
    model_of,
    option,
    prompt,
)
from tollgate_exporter.sinks.base import ExportItem

DEFAULT_BASE = "https://api.humanloop.com/v5"
_PROMPT_PARAMS = (
    "temperature",
    "max_tokens",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "stop",
)


def log(item: ExportItem, o: Options) -> dict[str, Any]:
    event = item.event
    meta = event.metadata
    out = completion(item)
    prompt_kernel: dict[str, Any] = {
        "model": model_of(event),
        "provider": event.custom_llm_provider,
    }
    prompt_kernel.update(
        {k: event.model_parameters[k] for k in _PROMPT_PARAMS if k in event.model_parameters}
    )
    body = {
        "path": first(
            meta.get("humanloop_path"),
            meta.get("prompt_path"),
            o["path"],
            f"tollgate/{event.model_group or event.requested_model}",
        ),
        "prompt": {k: v for k, v in prompt_kernel.items() if v is not None},
        "messages": prompt(item),
        "output_message": out,
        "output": out.get("content") if isinstance(out, dict) else None,
        "prompt_tokens": event.prompt_tokens,
        "output_tokens": event.completion_tokens,
        "prompt_cost": float(event.spend),
        "start_time": iso(event.start_time),
        "end_time": iso(event.end_time),
        "provider_latency": (event.upstream_latency_ms or event.total_latency_ms) / 1000,
        "error": error_text(event),
        "user": end_user(event),
        "metadata": {**metadata(item), "key_alias": event.key_alias, "team_id": event.team_id},
        "source_datapoint_id": meta.get("source_datapoint_id"),
    }
    return {k: v for k, v in body.items() if v is not None}


API = HttpApi(
    "humanloop",
    {
        "key": key("humanloop_api_key", "HUMANLOOP_API_KEY"),
        "base": endpoint("humanloop_base_url", "HUMANLOOP_BASE_URL", default=DEFAULT_BASE),
        "path": option("humanloop_path"),
    },
    auth=("X-API-KEY", "{key}"),
    path="/prompts/log",
    payload=log,
    identity=("base", "key", "path"),
)
SINK = API.sink
