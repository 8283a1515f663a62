"""Argilla sink: each call becomes a record of a dataset, upserted in bulk for annotation.

The dataset is found by name once per destination (`GET {ARGILLA_BASE_URL}/api/v1/me/
datasets?name=<name>`, header `X-Argilla-Api-Key`), then records are upserted with
`PUT /api/v1/datasets/{dataset_id}/records/bulk {"items": [...]}` (as LiteLLM's logger
sends them). A record: `external_id` (the request id, so a redelivery updates it),
`fields` mapped by `litellm_settings.argilla_transformation_object` (field name ->
`messages` | `response` | a standard-payload key such as `model`, `response_cost`,
`total_tokens`; default `{"user_input": "messages", "llm_output": "response"}`), and
`metadata` (model, tokens, cost, latency, key alias, team, session, tags).

Credentials: `argilla_api_key`, `argilla_base_url`, `argilla_dataset_name` (callback
vars) else `ARGILLA_API_KEY`, `ARGILLA_BASE_URL` (default `http://localhost:6900`),
`ARGILLA_DATASET_NAME` (default `litellm-completion`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tollgate_exporter.content import REDACTED
from tollgate_exporter.destinations import Destination
from tollgate_exporter.sinks._http_api import (
    HttpApi,
    Part,
    RenderContext,
    cached,
    completion,
    endpoint,
    error_text,
    json_of,
    key,
    latency_ms,
    model_of,
    option,
)
from tollgate_exporter.sinks.base import ExportItem, PermanentError, request
from tollgate_shared.config import LitellmSettings

DEFAULT_BASE = "http://localhost:6900"
DEFAULT_DATASET = "litellm-completion"
DEFAULT_FIELDS = {"user_input": "messages", "llm_output": "response"}
MAX_RECORDS = 500


def payload_value(item: ExportItem, source: str) -> Any:
    """A standard-logging-payload field, by LiteLLM's name."""
    event = item.event
    if source == "messages":
        return REDACTED if item.redacted else event.messages
    if source == "response":
        out = completion(item)
        if isinstance(out, dict):
            return out.get("content") or ""
        return error_text(event) or ""
    values = {
        "model": model_of(event),
        "model_group": event.model_group,
        "response_cost": float(event.spend),
        "prompt_tokens": event.prompt_tokens,
        "completion_tokens": event.completion_tokens,
        "total_tokens": event.total_tokens,
        "id": event.request_id,
        "call_type": event.call_type,
        "status": "failure" if error_text(event) else "success",
        "error_str": error_text(event),
        "end_user": event.end_user,
    }
    return values.get(source)


def record(item: ExportItem, fields: Mapping[str, str]) -> dict[str, Any]:
    event = item.event
    meta = {
        "model": model_of(event),
        "prompt_tokens": event.prompt_tokens,
        "completion_tokens": event.completion_tokens,
        "total_tokens": event.total_tokens,
        "response_cost": float(event.spend),
        "latency_ms": latency_ms(event),
        "key_alias": event.key_alias,
        "team_id": event.team_id,
        "session_id": event.session_id,
        "tags": list(event.tags) or None,
        "status": "failure" if error_text(event) else "success",
    }
    return {
        "external_id": event.request_id,
        "fields": {name: payload_value(item, source) for name, source in fields.items()},
        "metadata": {k: v for k, v in meta.items() if v is not None},
    }


def transformation(litellm: LitellmSettings) -> Mapping[str, str]:
    """`litellm_settings.argilla_transformation_object`: record field -> payload field."""
    raw = (litellm.model_extra or {}).get("argilla_transformation_object")
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, Mapping) else DEFAULT_FIELDS


async def render(ctx: RenderContext, dest: Destination, items: Sequence[ExportItem]) -> list[Part]:
    """Records for the dataset (looked up by name once per destination)."""
    o = dest.options

    async def dataset_id() -> str:
        response = await request(
            ctx.client,
            "GET",
            f"{o['base']}/api/v1/me/datasets",
            "argilla datasets",
            params={"name": o["dataset"]},
            headers=API.headers(o),
        )
        found = [
            d
            for d in json_of(response, "argilla datasets").get("items") or []
            if d.get("name") == o["dataset"]
        ]
        if not found:
            raise PermanentError(f"argilla has no dataset named {o['dataset']!r}", 404)
        return str(found[0]["id"])

    did = await cached(ctx.cache, "dataset", dataset_id)
    fields = transformation(ctx.sink.litellm)
    return API.posts(
        o,
        f"{o['base']}/api/v1/datasets/{did}/records/bulk",
        items,
        range(len(items)),
        payload=lambda item, _: record(item, fields),
    )


API = HttpApi(
    "argilla",
    {
        "key": key("argilla_api_key", "ARGILLA_API_KEY"),
        "base": endpoint("argilla_base_url", "ARGILLA_BASE_URL", default=DEFAULT_BASE),
        "dataset": option("argilla_dataset_name", "ARGILLA_DATASET_NAME", default=DEFAULT_DATASET),
    },
    auth=("X-Argilla-Api-Key", "{key}"),
    method="PUT",
    batch=MAX_RECORDS,
    envelope=lambda records: {"items": records},
    render=render,
    identity=("base", "key", "dataset"),
    label=("base", "dataset"),
)
SINK = API.sink
