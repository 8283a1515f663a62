"""Athina's inference logging API (`POST /api/v1/log/inference`, `athina-api-key` header)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from support.receivers.http_api import Invalid, VendorReceiver, loads, require


@dataclass
class AthinaReceiver(VendorReceiver):
    key_header = "athina-api-key"
    route = "/api/v1/log/inference"

    def decode(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> list[dict[str, Any]]:
        doc = loads(body)
        require(doc, "language_model_id", "prompt")
        for n in ("prompt_tokens", "completion_tokens", "total_tokens", "response_time"):
            if n in doc and not isinstance(doc[n], int):
                raise Invalid(f"{n} must be an integer")
        return [doc]
