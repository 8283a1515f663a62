"""PromptLayer's `POST /log-request` API (`X-API-KEY` header): chat prompt blueprints in and out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from support.receivers.http_api import Invalid, VendorReceiver, loads, require


@dataclass
class PromptlayerReceiver(VendorReceiver):
    key_header = "x-api-key"
    route = "/log-request"

    def decode(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> list[dict[str, Any]]:
        doc = loads(body)
        require(
            doc, "provider", "model", "input", "output", "request_start_time", "request_end_time"
        )
        for side in ("input", "output"):
            if doc[side].get("type") != "chat":
                raise Invalid(f"{side}.type must be chat")
            for m in doc[side]["messages"]:
                if not all(isinstance(c, dict) and c.get("type") == "text" for c in m["content"]):
                    raise Invalid(f"{side} content must be text parts")
        if not all(isinstance(v, str) for v in doc.get("metadata", {}).values()):
            raise Invalid("metadata values must be strings")
        datetime.fromisoformat(doc["request_start_time"])
        return [doc]

    def answer(self, records: list[dict[str, Any]]) -> Any:
        return {"success": True, "id": 1}
