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
    failed,
    model_of,
)
from tollgate_exporter.sinks.base import ExportItem, SinkType
from tollgate_shared.events import LlmRequestFinished

CHARGE_BY = ("end_user_id", "user_id", "team_id")
MAX_EVENTS = 100


def destination(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    c = Credentials(
        vars_,
        env,
        (
            "lago_api_key",
            "lago_api_base",
        ),
    )
    key = c.secret("lago_api_key", "LAGO_API_KEY")
    base = c.get("lago_api_base", "LAGO_API_BASE")
    code = c.get("lago_api_event_code", "LAGO_API_EVENT_CODE")
    missing = [
        n
        for n, v in (("LAGO_API_KEY", key), ("LAGO_API_BASE", base), ("LAGO_API_EVENT_CODE", code))
        if not v
    ]
    if missing:
        return f"lago needs {', '.join(missing)} (or lago_api_* callback vars)"
    charge_by = c.get("lago_api_charge_by", "LAGO_API_CHARGE_BY") or "end_user_id"
    if charge_by not in CHARGE_BY:
        return f"lago: LAGO_API_CHARGE_BY {charge_by!r} is not one of {', '.join(CHARGE_BY)}"
    url = base_url(str(base))
    return Destination(
        "lago",
        f"lago:{digest(url, key, code, charge_by)}",
        f"lago {safe_url(url)} {code}",
        {"url": url, "key": key, "code": code, "charge_by": charge_by},
    )


def customer(event: LlmRequestFinished, charge_by: str) -> str | None:
    return {"end_user_id": event.end_user, "user_id": event.user_id, "team_id": event.team_id}[
        charge_by
    ]


def usage_event(item: ExportItem, code: str, customer_id: str) -> dict[str, Any]:
    event = item.event
    return {
        "transaction_id": event.request_id,
        "external_subscription_id": customer_id,
        "code": code,
        "timestamp": int(event.end_time.timestamp()),
        "properties": {
            "model": model_of(event),
            "response_cost": float(event.spend),
            "prompt_tokens": event.prompt_tokens,
            "completion_tokens": event.completion_tokens,
            "total_tokens": event.total_tokens,
        },
    }


async def render(ctx: RenderContext, dest: Destination, items: Sequence[ExportItem]) -> list[Part]:
    o = dest.options
    parts: list[Part] = []
    ready: list[tuple[int, dict[str, Any]]] = []
    for i, item in enumerate(items):
        if failed(item):
            parts.append(Skip(i))
            continue
        cid = customer(item.event, o["charge_by"])
        if not cid:
            parts.append(Reject(i, f"lago: the call has no {o['charge_by']} to charge"))
            continue
        ready.append((i, usage_event(item, o["code"], cid)))
    for lo in range(0, len(ready), MAX_EVENTS):
        chunk = ready[lo : lo + MAX_EVENTS]
        parts.append(
            Post(
                f"{o['url']}/api/v1/events/batch",
                {"events": [e for _, e in chunk]},
                tuple(i for i, _ in chunk),
                {"authorization": f"Bearer {o['key']}"},
                what="lago",
            )
        )
    return parts


SINK = SinkType(
    kind="lago", names=("lago",), destination=destination, create=create_with("lago", render)
)
