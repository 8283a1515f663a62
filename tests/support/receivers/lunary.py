"""Lunary's ingest API (`POST /v1/runs/ingest`, bearer public key): its SDK's run events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from support.receivers.http_api import Invalid, VendorReceiver, loads, require

EVENTS = {"start", "end", "error", "feedback", "update", "chat"}


@dataclass
class LunaryReceiver(VendorReceiver):
    route = "/v1/runs/ingest"

    def decode(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> list[dict[str, Any]]:
        events = loads(body)["events"]
        for e in events:
            require(e, "type", "event", "runId", "timestamp")
            if e["event"] not in EVENTS:
                raise Invalid(f"event {e['event']!r}")
        return list(events)
