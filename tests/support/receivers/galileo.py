"""Galileo: the hosted spans API (`POST /v2/projects/{id}/spans`, `Galileo-API-Key`) and the
enterprise Observe API (`POST /login` form -> token, `POST /projects/{id}/observe/ingest`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from litestar import Response

from support.receivers.http_api import Invalid, VendorReceiver, bearer, loads, require


@dataclass
class GalileoReceiver(VendorReceiver):
    """`keys` maps API keys and `user:password` pairs to tenants."""

    def tenant(self, headers: dict[str, str]) -> str | None:
        token = bearer(headers) or ""
        if token.startswith("tok-"):
            return token.removeprefix("tok-")
        return self.keys.get(headers.get("galileo-api-key", ""))

    def lookup(
        self, method: str, path: str, body: bytes, headers: dict[str, str], query: dict[str, str]
    ) -> Response[Any] | None:
        if path != "/login":
            return None
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        tenant = self.keys.get(f"{form.get('username')}:{form.get('password')}")
        if tenant is None:
            return Response({"detail": "bad credentials"}, status_code=401)
        return Response({"access_token": f"tok-{tenant}", "token_type": "bearer"})

    def decode(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> list[dict[str, Any]]:
        parts = path.strip("/").split("/")
        doc = loads(body)
        if parts[0] == "v2" and parts[-1] == "spans":
            for s in doc["spans"]:
                require(s, "type", "input", "output", "created_at")
                if s["type"] != "llm" or not all("role" in m for m in s["input"]):
                    raise Invalid("an llm span with role messages")
                datetime.fromisoformat(s["created_at"])
            return [{**s, "_project": parts[2], "_api": "v2"} for s in doc["spans"]]
        if parts[-2:] == ["observe", "ingest"]:
            for r in doc["records"]:
                require(r, "latency_ms", "status_code", "input_text", "node_type", "model")
                datetime.strptime(r["created_at"], "%Y-%m-%dT%H:%M:%S")
            return [{**r, "_project": parts[1], "_api": "observe"} for r in doc["records"]]
        raise Invalid(f"no route {path}")
