"""Lago's batch events API (`POST /api/v1/events/batch`, bearer key): each event read with
the Lago client's own `Event` model; at most 100 per request, as Lago allows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lago_python_client.models import Event

from support.receivers.http_api import Invalid, VendorReceiver, loads


@dataclass
class LagoReceiver(VendorReceiver):
    route = "/api/v1/events/batch"

    def decode(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> list[dict[str, Any]]:
        events = loads(body)["events"]
        if not 0 < len(events) <= 100:
            raise Invalid("1 to 100 events per batch")
        out = []
        for e in events:
            event = Event(**e)
            if not event.external_subscription_id or not event.transaction_id:
                raise Invalid("transaction_id and external_subscription_id are required")
            out.append(event.model_dump() if hasattr(event, "model_dump") else event.dict())
        return out
