"""Humanloop's Prompt log API (`POST /v5/prompts/log`, `X-API-KEY` header)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from support.receivers.http_api import Invalid, VendorReceiver, loads, require


@dataclass
class HumanloopReceiver(VendorReceiver):
    def tenant(self, headers: dict[str, str]) -> str | None:
        return self.keys.get(headers.get("x-api-key", ""))

    def decode(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> list[dict[str, Any]]:
        if path != "/v5/prompts/log":
            raise Invalid(f"no route {path}")
        doc = loads(body)
        require(doc, "path", "prompt")
        require(doc["prompt"], "model")
        for t in ("start_time", "end_time"):
            datetime.fromisoformat(doc[t])
        return [doc]

    def answer(self, records: list[dict[str, Any]]) -> Any:
        return {"id": "log_1", "prompt_id": "pr_1", "version_id": "prv_1"}
