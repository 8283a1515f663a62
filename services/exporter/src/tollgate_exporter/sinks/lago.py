"""Lago sink: each successful call is a usage event against a customer, sent in batches.

`POST {LAGO_API_BASE}/api/v1/events/batch` with `Authorization: Bearer <key>` and
`{"events": [...]}` (at most 100 per request, Lago's limit): `transaction_id` (the
request id — Lago de-duplicates on it), `external_subscription_id` (the customer, by
`LAGO_API_CHARGE_BY` as LiteLLM's Lago integration chooses: `end_user_id` (default, the
request's `user`), `user_id` (the key's user) or `team_id`), `code`
(`LAGO_API_EVENT_CODE`, the billable metric), `timestamp` (the call's end, Unix
seconds) and `properties: {model, response_cost, prompt_tokens, completion_tokens,
total_tokens}`. A call without that customer id is dead-lettered with the reason;
failed calls are not billed.

Credentials: `lago_api_key`, `lago_api_base`, `lago_api_event_code`,
`lago_api_charge_by` (callback vars) else `LAGO_API_KEY`, `LAGO_API_BASE`,
`LAGO_API_EVENT_CODE`, `LAGO_API_CHARGE_BY`.
"""

from __future__ import annotations

from typing import Any

from tollgate_exporter.sinks._http_api import HttpApi, Options, endpoint, key, model_of, option
from tollgate_exporter.sinks.base import ExportItem
from tollgate_shared.events import LlmRequestFinished

CHARGE_BY = ("end_user_id", "user_id", "team_id")
MAX_EVENTS = 100


def known_charge_by(o: Options) -> str | None:
    if o["charge_by"] not in CHARGE_BY:
        return f"lago: LAGO_API_CHARGE_BY {o['charge_by']!r} is not one of {', '.join(CHARGE_BY)}"
    return None


def customer(event: LlmRequestFinished, charge_by: str) -> str | None:
    return {"end_user_id": event.end_user, "user_id": event.user_id, "team_id": event.team_id}[
        charge_by
    ]


def no_customer(item: ExportItem, o: Options) -> str | None:
    if not customer(item.event, o["charge_by"]):
        return f"lago: the call has no {o['charge_by']} to charge"
    return None


def usage_event(item: ExportItem, o: Options) -> dict[str, Any]:
    event = item.event
    return {
        "transaction_id": event.request_id,
        "external_subscription_id": customer(event, o["charge_by"]),
        "code": o["code"],
        "timestamp": int(event.end_time.timestamp()),
        "properties": {
            "model": model_of(event),
            "response_cost": float(event.spend),
            "prompt_tokens": event.prompt_tokens,
            "completion_tokens": event.completion_tokens,
            "total_tokens": event.total_tokens,
        },
    }


API = HttpApi(
    "lago",
    {
        "key": key("lago_api_key", "LAGO_API_KEY"),
        "base": endpoint("lago_api_base", "LAGO_API_BASE"),
        "code": option("lago_api_event_code", "LAGO_API_EVENT_CODE", required=True),
        "charge_by": option("lago_api_charge_by", "LAGO_API_CHARGE_BY", default="end_user_id"),
    },
    missing="lago needs {envs} (or lago_api_* callback vars)",
    finish=known_charge_by,
    path="/api/v1/events/batch",
    payload=usage_event,
    batch=MAX_EVENTS,
    envelope=lambda events: {"events": events},
    skip_failed=True,
    refuse=no_customer,
    identity=("base", "key", "code", "charge_by"),
    label=("base", "code"),
)
SINK = API.sink
