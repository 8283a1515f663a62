"""Argilla's v1 API (`X-Argilla-Api-Key`): dataset lookup by name, bulk record upsert."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from litestar import Response

from support.receivers.http_api import Invalid, VendorReceiver, loads


@dataclass
class ArgillaReceiver(VendorReceiver):
    """`datasets` maps tenant -> dataset names it has."""

    datasets: dict[str, list[str]] = field(default_factory=dict)

    key_header = "x-argilla-api-key"

    def lookup(
        self, method: str, path: str, body: bytes, headers: dict[str, str], query: dict[str, str]
    ) -> Response[Any] | None:
        if (method, path) != ("GET", "/api/v1/me/datasets"):
            return None
        tenant = self.tenant(headers)
        if tenant is None:
            return Response({"detail": "unauthorized"}, status_code=401)
        names = [n for n in self.datasets.get(tenant, []) if n == query.get("name", n)]
        return Response({"items": [{"id": f"ds-{tenant}-{n}", "name": n} for n in names]})

    def decode(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> list[dict[str, Any]]:
        parts = path.strip("/").split("/")
        if (
            method != "PUT"
            or parts[:3] != ["api", "v1", "datasets"]
            or parts[4:] != ["records", "bulk"]
        ):
            raise Invalid(f"no route {method} {path}")
        if not parts[3].startswith(f"ds-{self.tenant(headers)}-"):
            raise Invalid(f"dataset {parts[3]} is not this tenant's")
        items = loads(body)["items"]
        for item in items:
            if not isinstance(item.get("fields"), dict) or not item["fields"]:
                raise Invalid("a record needs fields")
        return [{**i, "_dataset": parts[3]} for i in items]

    def answer(self, records: list[dict[str, Any]]) -> Any:
        return {
            "items": [
                {"id": str(n), "external_id": r.get("external_id")} for n, r in enumerate(records)
            ]
        }
