"""OpenMeter sink: each successful call is one CloudEvent of token usage and cost, sent in batches.

`POST {OPENMETER_API_ENDPOINT}/api/v1/events` (default `https://openmeter.cloud`) with
`Authorization: Bearer <key>` and `content-type: application/cloudevents-batch+json`: a
JSON array of CloudEvents 1.0 — `specversion`, `id` (the request id, which OpenMeter
de-duplicates on), `source` (`litellm-proxy`), `type` (`OPENMETER_EVENT_TYPE`, default
`litellm_tokens`), `subject` (the end user, else the key's user, as LiteLLM chooses;
none: the event is dead-lettered with that reason), `time` (the call's end), and
`data: {model, cost, prompt_tokens, completion_tokens, total_tokens, key_alias,
team_id}`. Failed calls are not metered (LiteLLM logs successes only).

Credentials: `openmeter_api_key`, `openmeter_api_endpoint`, `openmeter_event_type`
(callback vars) else `OPENMETER_API_KEY`, `OPENMETER_API_ENDPOINT`, `OPENMETER_EVENT_TYPE`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tollgate_exporter.destinations import Destination, digest, safe_url
from tollgate_exporter.sinks._http_api import (
    Credentials,
    Part,
    Post,
    Reject,
    RenderContext,
    Skip,
    base_url,
    create_with,
    end_user,
    failed,
    iso,
    model_of,
)
from tollgate_exporter.sinks.base import ExportItem, SinkType

DEFAULT_ENDPOINT = "https://openmeter.cloud"
DEFAULT_TYPE = "litellm_tokens"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"


def destination(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    c = Credentials(
        vars_,
        env,
        (
            "openmeter_api_key",
            "openmeter_api_endpoint",
        ),
    )
    key = c.secret("openmeter_api_key", "OPENMETER_API_KEY")
    if not key:
        return "openmeter needs openmeter_api_key (or OPENMETER_API_KEY)"
    url = base_url(c.get("openmeter_api_endpoint", "OPENMETER_API_ENDPOINT") or DEFAULT_ENDPOINT)
    kind = c.get("openmeter_event_type", "OPENMETER_EVENT_TYPE") or DEFAULT_TYPE
    return Destination(
        "openmeter",
        f"openmeter:{digest(url, key, kind)}",
        f"openmeter {safe_url(url)} {kind}",
        {"url": url, "key": key, "type": kind},
    )


def cloudevent(item: ExportItem, event_type: str) -> dict[str, Any]:
    event = item.event
    return {
        "specversion": "1.0",
        "id": event.request_id,
        "source": "litellm-proxy",
        "type": event_type,
        "subject": end_user(event),
        "time": iso(event.end_time),
        "datacontenttype": "application/json",
        "data": {
            "model": model_of(event),
            "cost": float(event.spend),
            "prompt_tokens": event.prompt_tokens,
            "completion_tokens": event.completion_tokens,
            "total_tokens": event.total_tokens,
            "key_alias": event.key_alias,
            "team_id": event.team_id,
        },
    }


async def render(ctx: RenderContext, dest: Destination, items: Sequence[ExportItem]) -> list[Part]:
    o = dest.options
    parts: list[Part] = []
    batch: list[int] = []
    for i, item in enumerate(items):
        if failed(item):
            parts.append(Skip(i))
        elif end_user(item.event) is None:
            parts.append(Reject(i, "openmeter: no subject (the call has no end user or user id)"))
        else:
            batch.append(i)
    if batch:
        parts.append(
            Post(
                f"{o['url']}/api/v1/events",
                [cloudevent(items[i], o["type"]) for i in batch],
                tuple(batch),
                {"authorization": f"Bearer {o['key']}"},
                content_type=BATCH_CONTENT_TYPE,
                what="openmeter",
            )
        )
    return parts


SINK = SinkType(
    kind="openmeter",
    names=("openmeter",),
    destination=destination,
    create=create_with("openmeter", render),
)
