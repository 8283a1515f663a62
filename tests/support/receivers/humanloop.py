"""Humanloop's Prompt log API (`POST /v5/prompts/log`, `X-API-KEY` header)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from support.receivers.http_api import VendorReceiver, loads, require


@dataclass
class HumanloopReceiver(VendorReceiver):
    key_header = "x-api-key"
    route = "/v5/prompts/log"

    def decode(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> list[dict[str, Any]]:
        doc = loads(body)
        require(doc, "path", "prompt")
        require(doc["prompt"], "model")
        for t in ("start_time", "end_time"):
            datetime.fromisoformat(doc[t])
        return [doc]

    def answer(self, records: list[dict[str, Any]]) -> Any:
        return {"id": "log_1", "prompt_id": "pr_1", "version_id": "prv_1"}
