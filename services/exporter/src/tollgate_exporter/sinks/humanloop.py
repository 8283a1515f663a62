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

from collections.abc import Mapping, Sequence
from typing import Any

from tollgate_exporter.destinations import Destination, digest, pick, safe_url
from tollgate_exporter.sinks._http_api import (
    Credentials,
    Part,
    Post,
    RenderContext,
    base_url,
    completion,
    create_with,
    end_user,
    error_text,
    first,
    iso,
    metadata,
    model_of,
    prompt,
)
from tollgate_exporter.sinks.base import ExportItem, SinkType

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


def destination(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    c = Credentials(
        vars_,
        env,
        (
            "humanloop_api_key",
            "humanloop_base_url",
        ),
    )
    key = c.secret("humanloop_api_key", "HUMANLOOP_API_KEY")
    if not key:
        return "humanloop needs humanloop_api_key (or HUMANLOOP_API_KEY)"
    base = base_url(c.get("humanloop_base_url", "HUMANLOOP_BASE_URL") or DEFAULT_BASE)
    path = pick(vars_, "humanloop_path")
    return Destination(
        "humanloop",
        f"humanloop:{digest(base, key, path)}",
        f"humanloop {safe_url(base)}",
        {"base": base, "key": key, "path": path},
    )


def log(item: ExportItem, default_path: str | None) -> dict[str, Any]:
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
            default_path,
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


async def render(ctx: RenderContext, dest: Destination, items: Sequence[ExportItem]) -> list[Part]:
    o = dest.options
    return [
        Post(
            f"{o['base']}/prompts/log",
            log(item, o["path"]),
            (i,),
            {"X-API-KEY": o["key"]},
            what="humanloop",
        )
        for i, item in enumerate(items)
    ]


SINK = SinkType(
    kind="humanloop",
    names=("humanloop",),
    destination=destination,
    create=create_with("humanloop", render),
)
