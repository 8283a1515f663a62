"""Braintrust sink: each call is one `llm` span inserted into a project's logs.

Braintrust's REST API: the project is looked up (or created) by name once per
destination with `POST {BRAINTRUST_API_BASE}/project {"name": ...}`, then events are
inserted in batches with `POST /project_logs/{project_id}/insert {"events": [...]}`,
`Authorization: Bearer <key>`. An event: `id` (derived from the event id, so a
redelivery overwrites), `input` (messages), `output` (choices), `error`, `tags`,
`metadata` (LiteLLM's metadata, `model`, `litellm_response_cost`), `metrics`
(`prompt_tokens`, `completion_tokens`, `total_tokens`, `total_cost`, `start`, `end`,
`time_to_first_token`), `span_attributes: {name, type: "llm"}`. A call's
`metadata.project_id` / `metadata.project_name` choose its project, as in LiteLLM.

Credentials: `braintrust_api_key`, `braintrust_api_base`, `braintrust_project_name`,
`braintrust_project_id` (callback vars) else `BRAINTRUST_API_KEY`, `BRAINTRUST_API_BASE`
(default `https://api.braintrustdata.com/v1`); default project `litellm`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tollgate_exporter.destinations import Destination
from tollgate_exporter.sinks._http_api import (
    HttpApi,
    Part,
    RenderContext,
    cached,
    endpoint,
    error_text,
    failed,
    json_of,
    key,
    metadata,
    model_of,
    option,
    prompt,
    response_body,
)
from tollgate_exporter.sinks.base import ExportItem, request, stable_id

DEFAULT_BASE = "https://api.braintrustdata.com/v1"
DEFAULT_PROJECT = "litellm"
MAX_EVENTS = 500


def log_event(item: ExportItem) -> dict[str, Any]:
    event = item.event
    meta = metadata(item)
    meta.update({"model": model_of(event), "litellm_response_cost": float(event.spend)})
    body = response_body(item)
    output: Any = None
    if not failed(item) and isinstance(body, dict):
        output = body.get("choices")
    metrics: dict[str, Any] = {
        "prompt_tokens": event.prompt_tokens,
        "completion_tokens": event.completion_tokens,
        "total_tokens": event.total_tokens,
        "total_cost": float(event.spend),
        "start": event.start_time.timestamp(),
        "end": event.end_time.timestamp(),
    }
    if event.completion_start_time is not None:
        metrics["time_to_first_token"] = (
            event.completion_start_time - event.start_time
        ).total_seconds()
    out = {
        "id": stable_id(event.event_id, "braintrust"),
        "input": prompt(item),
        "output": output,
        "error": error_text(event),
        "tags": list(event.tags) or None,
        "metadata": meta,
        "metrics": metrics,
        "span_attributes": {"name": meta.get("span_name", "Chat Completion"), "type": "llm"},
    }
    return {k: v for k, v in out.items() if v is not None}


async def render(ctx: RenderContext, dest: Destination, items: Sequence[ExportItem]) -> list[Part]:
    """The calls grouped by project (looked up by name once per destination)."""
    o = dest.options
    headers = API.headers(o)

    async def project_id(name: str) -> str:
        async def fetch() -> str:
            response = await request(
                ctx.client,
                "POST",
                f"{o['base']}/project",
                "braintrust project",
                json={"name": name},
                headers=headers,
            )
            return str(json_of(response, "braintrust project")["id"])

        return str(await cached(ctx.cache, f"project:{name}", fetch))

    groups: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        meta = item.event.metadata
        pid = meta.get("project_id") or o["project_id"]
        if not pid:
            pid = await project_id(str(meta.get("project_name") or o["project"]))
        groups.setdefault(str(pid), []).append(i)
    parts: list[Part] = []
    for pid, indices in groups.items():
        parts += API.posts(o, f"{o['base']}/project_logs/{pid}/insert", items, indices)
    return parts


API = HttpApi(
    "braintrust",
    {
        "key": key("braintrust_api_key", "BRAINTRUST_API_KEY"),
        "base": endpoint("braintrust_api_base", "BRAINTRUST_API_BASE", default=DEFAULT_BASE),
        "project_id": option("braintrust_project_id"),
        "project": option("braintrust_project_name", default=DEFAULT_PROJECT),
    },
    payload=lambda item, _: log_event(item),
    batch=MAX_EVENTS,
    envelope=lambda events: {"events": events},
    render=render,
    identity=("base", "key", "project_id", "project"),
    label=("base", lambda o: o["project_id"] or o["project"]),
)
SINK = API.sink
