"""LangSmith's runs batch API (`POST /runs/batch`, `x-api-key`), runs checked as LangSmith does."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from support.receivers.http_api import Invalid, VendorReceiver, loads, require

RUN_TYPES = {"llm", "chain", "tool", "retriever", "embedding", "prompt", "parser"}


@dataclass
class LangsmithReceiver(VendorReceiver):
    key_header = "x-api-key"

    def decode(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> list[dict[str, Any]]:
        if (method, path) != ("POST", "/runs/batch"):
            raise Invalid(f"no route {method} {path}")
        runs = loads(body).get("post") or []
        for run in runs:
            require(run, "id", "trace_id", "dotted_order", "name", "run_type", "start_time")
            if run["run_type"] not in RUN_TYPES:
                raise Invalid(f"run_type {run['run_type']!r}")
            start = datetime.fromisoformat(run["start_time"])
            expected = f"{start.strftime('%Y%m%dT%H%M%S%fZ')}{run['id']}"
            if run["trace_id"] == run["id"] and run["dotted_order"] != expected:
                raise Invalid(f"dotted_order {run['dotted_order']} is not {expected}")
        return list(runs)
