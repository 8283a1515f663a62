"""Lunary sink: each call is a `start` and an `end` (or `error`) run event, batched to ingest.

`POST {LUNARY_API_URL}/v1/runs/ingest` with `Authorization: Bearer <public key>` and
`{"events": [...]}` (what the `lunary` SDK's `track_event` sends): `type: "llm"`,
`event`, `runId` (derived from the event id), `parentRunId` (`metadata.parent_run_id`),
`name` (the model), `timestamp`, `userId` (end user, else the key's user),
`userProps`, `tags`, `metadata`, `params`, `input`, and on the closing event
`output`, `tokensUsage: {prompt, completion}`, `cost` or `error: {message, stack}`.

Credentials: `lunary_public_key`, `lunary_api_url` (callback vars) else
`LUNARY_PUBLIC_KEY`, `LUNARY_API_URL` (default `https://api.lunary.ai`).
"""

from __future__ import annotations

from typing import Any

from tollgate_exporter.sinks._http_api import (
    ALL,
    HttpApi,
    completion,
    end_user,
    endpoint,
    error_text,
    failed,
    iso,
    key,
    metadata,
    model_of,
    prompt,
)
from tollgate_exporter.sinks.base import ExportItem, stable_id

DEFAULT_URL = "https://api.lunary.ai"


def events(item: ExportItem) -> list[dict[str, Any]]:
    event = item.event
    meta = metadata(item)
    run_id = stable_id(event.event_id, "lunary-run")
    start = {
        "type": "llm",
        "event": "start",
        "runId": run_id,
        "parentRunId": meta.get("parent_run_id"),
        "name": model_of(event),
        "timestamp": iso(event.start_time),
        "userId": end_user(event),
        "userProps": {"key_alias": event.key_alias, "team_id": event.team_id},
        "tags": list(event.tags) or None,
        "metadata": meta,
        "params": {
            k: v
            for k, v in event.model_parameters.items()
            if isinstance(v, str | int | float | bool)
        },
        "input": prompt(item),
        "runtime": "tollgate",
    }
    end: dict[str, Any] = {
        "type": "llm",
        "event": "error" if failed(item) else "end",
        "runId": run_id,
        "timestamp": iso(event.end_time),
        "runtime": "tollgate",
        "tokensUsage": {"prompt": event.prompt_tokens, "completion": event.completion_tokens},
    }
    if failed(item):
        end["error"] = {"message": error_text(event), "stack": None}
    else:
        end["output"] = completion(item)
        end["cost"] = float(event.spend)
    return [start, end]


API = HttpApi(
    "lunary",
    {
        "key": key("lunary_public_key", "LUNARY_PUBLIC_KEY", "LUNARY_APP_ID"),
        "base": endpoint("lunary_api_url", "LUNARY_API_URL", default=DEFAULT_URL),
    },
    path="/v1/runs/ingest",
    payload=lambda item, _: events(item),
    batch=ALL,
    envelope=lambda calls: {"events": [e for call in calls for e in call]},
)
SINK = API.sink
