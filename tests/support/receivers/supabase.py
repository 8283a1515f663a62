"""A Supabase receiver: PostgREST inserts as Supabase documents them — `POST /rest/v1/{table}`
with `apikey` and `Authorization: Bearer` the service key, a JSON array of row objects all
with the same keys, `Prefer: return=minimal` (201, empty body); with
`resolution=ignore-duplicates` a row whose primary key (`request_id`) exists is skipped,
without it the whole insert is a 409, as PostgreSQL's unique violation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from litestar import Litestar, Request, Response, post
from litestar.params import FromPath

from support.receivers import _Receiver


@dataclass
class SupabaseReceiver(_Receiver):
    key: str = "service-role-key"
    tables: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    invalid: list[str] = field(default_factory=list)

    def of(self, table: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.tables.get(table, {}).values())

    def app(self) -> Litestar:
        rec = self

        @post("/rest/v1/{table:str}", status_code=201)
        async def insert(table: FromPath[str], request: Request[Any, Any, Any]) -> Response[Any]:
            body, failure = await rec._gate(request)
            if failure is not None:
                return failure
            h = request.headers
            if h.get("apikey") != rec.key or h.get("authorization") != f"Bearer {rec.key}":
                return Response({"message": "Invalid API key"}, status_code=401)
            prefer = {p.strip() for p in h.get("prefer", "").split(",")}
            rows = json.loads(body)
            if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
                rec.invalid.append("body must be a non-empty array of objects")
                return Response({"code": "PGRST102"}, status_code=400)
            if len({frozenset(r) for r in rows}) != 1:
                rec.invalid.append("all rows must have the same keys")
                return Response({"code": "PGRST102"}, status_code=400)
            with rec._lock:
                stored = rec.tables.setdefault(table, {})
                clash = [r["request_id"] for r in rows if r.get("request_id") in stored]
                if clash and "resolution=ignore-duplicates" not in prefer:
                    return Response({"code": "23505", "details": str(clash)}, status_code=409)
                for r in rows:
                    stored.setdefault(r["request_id"], r)
            if "return=minimal" in prefer:
                return Response(None, status_code=201)
            return Response(rows, status_code=201)

        return Litestar([insert])
