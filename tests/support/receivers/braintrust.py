"""Braintrust's REST API: `POST /v1/project` (create or get by name) and
`POST /v1/project_logs/{project_id}/insert` (bearer key); records carry `_project`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Response

from support.receivers.http_api import Invalid, VendorReceiver, loads, require


@dataclass
class BraintrustReceiver(VendorReceiver):
    def lookup(
        self, method: str, path: str, body: bytes, headers: dict[str, str], query: dict[str, str]
    ) -> Response[Any] | None:
        if path != "/v1/project":
            return None
        tenant = self.tenant(headers)
        if tenant is None:
            return Response({"error": "unauthorized"}, status_code=401)
        name = loads(body)["name"]
        return Response({"id": f"proj-{tenant}-{name}", "name": name})

    def decode(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> list[dict[str, Any]]:
        parts = path.strip("/").split("/")
        if len(parts) != 4 or parts[:2] != ["v1", "project_logs"] or parts[3] != "insert":
            raise Invalid(f"no route {path}")
        tenant = self.tenant(headers)
        if not parts[2].startswith(f"proj-{tenant}-"):
            raise Invalid(f"project {parts[2]} is not {tenant}'s")
        events = loads(body)["events"]
        for e in events:
            require(e, "id")
            if e.get("span_attributes", {}).get("type") not in (
                None,
                "llm",
                "task",
                "tool",
                "eval",
            ):
                raise Invalid("span_attributes.type")
        return [{**e, "_project": parts[2]} for e in events]

    def answer(self, records: list[dict[str, Any]]) -> Any:
        return {"row_ids": [r["id"] for r in records]}
