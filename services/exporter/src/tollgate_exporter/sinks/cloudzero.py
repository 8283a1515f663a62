"""CloudZero sink: each successful call is a CBF row streamed to the AnyCost API.

`POST {base}/v2/connections/billing/anycost/{CLOUDZERO_CONNECTION_ID}/billing_drops`
(base `https://api.cloudzero.com`) with `Authorization: Bearer <key>` and, per month of
the batch, `{"month": "YYYY-MM", "operation": "sum", "data": [row, ...]}` — `sum`, so
each drop adds to what the month holds instead of replacing the hour. A row uses the
CloudZero Billing Format's column names, numbers as strings: `time/usage_start`,
`cost/cost`, `usage/amount` (tokens), `usage/units`, `lineitem/type`,
`resource/id` (a CZRN of the model), `resource/service` (provider), `resource/account`
(team), `resource/region`, `resource/usage_family`, and `resource/tag:*` (model,
key alias, team, user, end user, request id, input/output tokens).
Failed calls cost nothing and are not sent.

Credentials: `cloudzero_api_key`, `cloudzero_connection_id`, `cloudzero_api_base`
(callback vars) else `CLOUDZERO_API_KEY`, `CLOUDZERO_CONNECTION_ID`, `CLOUDZERO_API_BASE`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC
from functools import partial
from typing import Any

from tollgate_exporter.destinations import Destination
from tollgate_exporter.sinks._http_api import (
    ALL,
    HttpApi,
    Part,
    RenderContext,
    Skip,
    end_user,
    endpoint,
    failed,
    iso,
    key,
    model_of,
)
from tollgate_exporter.sinks.base import ExportItem

DEFAULT_BASE = "https://api.cloudzero.com"
_CZRN_PART = re.compile(r"[^a-z0-9-]+")


def _czrn_part(value: str | None) -> str:
    return _CZRN_PART.sub("-", (value or "unknown").lower()).strip("-") or "unknown"


def row(item: ExportItem) -> dict[str, str]:
    event = item.event
    provider = event.custom_llm_provider or "litellm"
    model = model_of(event)
    czrn = ":".join(
        [
            "czrn",
            _czrn_part(provider),
            _czrn_part(event.model_group or event.requested_model),
            _czrn_part(event.region or "global"),
            _czrn_part(event.team_id),
            "llm-usage",
            _czrn_part(model),
        ]
    )
    tags = {
        "model": model,
        "model_group": event.model_group,
        "key_alias": event.key_alias,
        "team_id": event.team_id,
        "user_id": event.user_id,
        "end_user": event.end_user or end_user(event),
        "request_id": event.request_id,
        "input_tokens": str(event.prompt_tokens),
        "output_tokens": str(event.completion_tokens),
    }
    out = {
        "time/usage_start": str(iso(event.start_time)),
        "cost/cost": format(event.spend, "f"),
        "usage/amount": str(event.total_tokens),
        "usage/units": "tokens",
        "lineitem/type": "Usage",
        "resource/id": czrn,
        "resource/service": provider,
        "resource/account": event.team_id or "no-team",
        "resource/region": event.region or "global",
        "resource/usage_family": "llm-tokens",
    }
    out.update({f"resource/tag:{k}": str(v) for k, v in tags.items() if v})
    return out


def drop(month: str, rows: list[Any]) -> dict[str, Any]:
    """A month's billing drop, added to what the month holds (`sum`)."""
    return {"month": month, "operation": "sum", "data": rows}


async def render(ctx: RenderContext, dest: Destination, items: Sequence[ExportItem]) -> list[Part]:
    """One drop per month of the batch (a drop's rows belong to its month)."""
    o = dest.options
    parts: list[Part] = []
    months: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        if failed(item):
            parts.append(Skip(i))
            continue
        month = item.event.start_time.astimezone(UTC).strftime("%Y-%m")
        months.setdefault(month, []).append(i)
    url = f"{o['base']}/v2/connections/billing/anycost/{o['connection']}/billing_drops"
    for month, indices in months.items():
        parts += API.posts(o, url, items, indices, envelope=partial(drop, month))
    return parts


API = HttpApi(
    "cloudzero",
    {
        "key": key("cloudzero_api_key", "CLOUDZERO_API_KEY"),
        "connection": key("cloudzero_connection_id", "CLOUDZERO_CONNECTION_ID"),
        "base": endpoint("cloudzero_api_base", "CLOUDZERO_API_BASE", default=DEFAULT_BASE),
    },
    missing="cloudzero needs cloudzero_api_key and cloudzero_connection_id (CLOUDZERO_*)",
    payload=lambda item, _: row(item),
    batch=ALL,
    render=render,
    identity=("base", "key", "connection"),
    label=("base", "connection"),
)
SINK = API.sink
