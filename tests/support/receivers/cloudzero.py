"""CloudZero's AnyCost stream API (`POST /v2/connections/billing/anycost/{id}/billing_drops`,
bearer key): CBF rows with numbers as strings, each in the drop's month."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from support.receivers.http_api import Invalid, VendorReceiver, loads, require

OPERATIONS = {"replace_drop", "replace_hourly", "sum"}


@dataclass
class CloudzeroReceiver(VendorReceiver):
    def decode(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> list[dict[str, Any]]:
        m = re.fullmatch(r"/v2/connections/billing/anycost/([^/]+)/billing_drops", path)
        if not m:
            raise Invalid(f"no route {path}")
        doc = loads(body)
        if (
            not re.fullmatch(r"\d{4}-\d{2}", doc.get("month", ""))
            or doc.get("operation") not in OPERATIONS
        ):
            raise Invalid("month YYYY-MM and a known operation are required")
        for row in doc["data"]:
            require(row, "time/usage_start", "cost/cost", "resource/id")
            if not all(isinstance(v, str) for v in row.values()):
                raise Invalid("CBF values are strings")
            Decimal(row["cost/cost"])
            start = datetime.fromisoformat(row["time/usage_start"])
            if start.strftime("%Y-%m") != doc["month"]:
                raise Invalid("a row outside the drop's month")
        return [
            {**r, "_connection": m.group(1), "_operation": doc["operation"]} for r in doc["data"]
        ]
