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

from typing import Any

from tollgate_exporter.sinks._http_api import (
    ALL,
    HttpApi,
    Options,
    end_user,
    endpoint,
    iso,
    key,
    model_of,
    option,
)
from tollgate_exporter.sinks.base import ExportItem

DEFAULT_ENDPOINT = "https://openmeter.cloud"
DEFAULT_TYPE = "litellm_tokens"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"


def cloudevent(item: ExportItem, o: Options) -> dict[str, Any]:
    event = item.event
    return {
        "specversion": "1.0",
        "id": event.request_id,
        "source": "litellm-proxy",
        "type": o["type"],
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


def no_subject(item: ExportItem, o: Options) -> str | None:
    if end_user(item.event) is None:
        return "openmeter: no subject (the call has no end user or user id)"
    return None


API = HttpApi(
    "openmeter",
    {
        "key": key("openmeter_api_key", "OPENMETER_API_KEY"),
        "base": endpoint(
            "openmeter_api_endpoint", "OPENMETER_API_ENDPOINT", default=DEFAULT_ENDPOINT
        ),
        "type": option("openmeter_event_type", "OPENMETER_EVENT_TYPE", default=DEFAULT_TYPE),
    },
    path="/api/v1/events",
    payload=cloudevent,
    batch=ALL,
    content_type=BATCH_CONTENT_TYPE,
    skip_failed=True,
    refuse=no_subject,
    identity=("base", "key", "type"),
    label=("base", "type"),
)
SINK = API.sink
