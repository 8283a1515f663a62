"""A receiver for vendors' own HTTP ingestion APIs: authenticates, decodes, records per tenant.

A vendor receiver subclasses `VendorReceiver` and says how its vendor authenticates
(`key_header`: the header carrying the key, `authorization` for a bearer token; or
`tenant`: the credential's tenant, or None for a 401), where it ingests (`route`, or
routing in `decode`), how it decodes a request the
way the vendor would (`decode`: the records, or `Invalid` for a 400 naming what is
wrong) and, where the API has them, its lookup endpoints (`lookup`: tokens, project
or dataset ids). Records are kept per tenant, so a test can show that one team's
credentials never carried another team's calls.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from litestar import Litestar, Request, Response, route
from litestar.params import FromPath

from support.receivers import _Receiver


class Invalid(Exception):  # noqa: N818 - reads as the vendor's answer
    """The payload is not what the vendor's API accepts (answered 400)."""


@dataclass
class VendorReceiver(_Receiver):
    """`keys` maps a credential to its tenant (a project, an account)."""

    keys: dict[str, str] = field(default_factory=dict)
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    invalid: list[str] = field(default_factory=list)

    # --- what a vendor says -------------------------------------------------------

    key_header: ClassVar[str] = "authorization"
    route: ClassVar[str | None] = None

    def tenant(self, headers: dict[str, str]) -> str | None:
        if self.key_header == "authorization":
            return self.keys.get(bearer(headers) or "")
        return self.keys.get(headers.get(self.key_header, ""))

    def decode(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> list[dict[str, Any]]:
        raise NotImplementedError

    def lookup(
        self, method: str, path: str, body: bytes, headers: dict[str, str], query: dict[str, str]
    ) -> Response[Any] | None:
        """Answer an endpoint that is not ingestion (token exchange, id lookup); None if not."""
        return None

    def answer(self, records: list[dict[str, Any]]) -> Any:
        return {"ok": True, "count": len(records)}

    # --- what tests read ----------------------------------------------------------

    def of(self, tenant: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.records.get(tenant, []))

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r for rs in self.records.values() for r in rs]

    def where(self, tenant: str, key: str, value: Any) -> list[dict[str, Any]]:
        return [r for r in self.of(tenant) if r.get(key) == value]

    def app(self) -> Litestar:
        rec = self

        @route("/{path:path}", http_method=["GET", "POST", "PUT"], status_code=200)
        async def ingest(path: FromPath[str], request: Request[Any, Any, Any]) -> Response[Any]:
            body, failure = await rec._gate(request)
            if failure is not None:
                return failure
            headers = {k.lower(): v for k, v in request.headers.items()}
            query = dict(request.query_params)
            special = rec.lookup(request.method, path, body, headers, query)
            if special is not None:
                return special
            tenant = rec.tenant(headers)
            if tenant is None:
                return Response({"error": "invalid api key"}, status_code=401)
            try:
                if rec.route is not None and path != rec.route:
                    raise Invalid(f"no route {path}")
                records = rec.decode(request.method, path, body, headers)
            except (Invalid, ValueError, KeyError, TypeError) as exc:
                with rec._lock:
                    rec.invalid.append(f"{type(exc).__name__}: {exc}")
                return Response({"error": f"invalid payload: {exc}"}, status_code=400)
            with rec._lock:
                rec.records.setdefault(tenant, []).extend(records)
            return Response(rec.answer(records))

        return Litestar([ingest])


def bearer(headers: dict[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    return auth[7:] if auth.lower().startswith("bearer ") else None


def loads(body: bytes) -> Any:
    return json.loads(body)


def require(doc: dict[str, Any], *fields: str) -> None:
    missing = [f for f in fields if doc.get(f) in (None, "")]
    if missing:
        raise Invalid(f"missing {', '.join(missing)}")
