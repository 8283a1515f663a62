"""Greenscale's logging endpoint (`POST <GREENSCALE_ENDPOINT>`, `api-key` header): usage only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from support.receivers.http_api import Invalid, VendorReceiver, loads, require


@dataclass
class GreenscaleReceiver(VendorReceiver):
    key_header = "api-key"

    def decode(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> list[dict[str, Any]]:
        doc = loads(body)
        require(doc, "modelId", "timestamp")
        if not all(isinstance(doc[n], int) for n in ("inputTokenCount", "outputTokenCount")):
            raise Invalid("token counts must be integers")
        if not all(set(t) == {"key", "value"} for t in doc.get("tags", [])):
            raise Invalid("tags are {key, value}")
        return [doc]
