"""OpenMeter's event ingestion (`POST /api/v1/events`, bearer key): CloudEvents in structured
or batch JSON mode, each read with the CloudEvents SDK's JSON format (which checks the
required attributes)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cloudevents.core.formats.json import JSONFormat

from support.receivers.http_api import Invalid, VendorReceiver, loads


@dataclass
class OpenmeterReceiver(VendorReceiver):
    route = "/api/v1/events"

    def decode(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> list[dict[str, Any]]:
        ctype = headers.get("content-type", "")
        doc = loads(body)
        if ctype.startswith("application/cloudevents-batch+json"):
            docs = doc
        elif ctype.startswith("application/cloudevents+json"):
            docs = [doc]
        else:
            raise Invalid(f"content-type {ctype}")
        out = []
        for d in docs:
            ce = JSONFormat().read(None, json.dumps(d))
            if not ce.get_subject():
                raise Invalid("subject is required")
            out.append({**ce.get_attributes(), "data": ce.get_data()})
        return out
