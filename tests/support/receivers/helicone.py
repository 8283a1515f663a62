"""Helicone's logging API (`POST /custom/v1/log`, bearer key): a provider request + response."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from support.receivers.http_api import Invalid, VendorReceiver, loads, require


@dataclass
class HeliconeReceiver(VendorReceiver):
    route = "/custom/v1/log"

    def decode(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> list[dict[str, Any]]:
        doc = loads(body)
        require(doc, "providerRequest", "providerResponse", "timing")
        require(doc["providerRequest"], "url", "json")
        require(doc["providerResponse"], "json", "status")
        for t in ("startTime", "endTime"):
            stamp = doc["timing"][t]
            if not isinstance(stamp["seconds"], int) or not 0 <= stamp["milliseconds"] < 1000:
                raise Invalid(f"timing.{t}")
        return [doc]
