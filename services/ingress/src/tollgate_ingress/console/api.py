"""The console's only way to data: Tollgate's public APIs, called with the signed-in key."""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from tollgate_ingress.forwarding import Owners


class ApiError(Exception):
    """A public API refused or failed; `status` and its message are shown to the operator, next
    to the field `param` names when it names one."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param


def _message(resp: httpx.Response) -> tuple[str, str | None]:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300] or resp.reason_phrase, None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            param = err.get("param")
            return str(err["message"]), str(param) if param else None
        if body.get("detail"):
            return str(body["detail"]), None
    return resp.text[:300], None


@dataclass(frozen=True)
class PublicApi:
    """The same paths a client of port 4000 uses, sent to their owning services (as ingress's
    forwarding does) with the signed-in key in `Authorization`."""

    owners: Owners
    client: httpx.AsyncClient
    key: str

    def _url(self, path: str) -> str:
        url = self.owners.url_for(path)
        if url is None:
            raise ApiError(404, f"no public API at {path}")
        return url

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
    ) -> Any:
        clean = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        headers = {"authorization": f"Bearer {self.key}", "content-type": "application/json"}
        try:
            resp = await self.client.request(
                method,
                self._url(path),
                params=clean,
                headers=headers,
                content=orjson.dumps(body) if body is not None else None,
            )
        except httpx.HTTPError as exc:
            raise ApiError(503, f"{path} is unavailable: {type(exc).__name__}") from exc
        if resp.status_code >= 400:
            raise ApiError(resp.status_code, *_message(resp))
        return resp.json() if resp.content else None

    async def get(self, path: str, **params: Any) -> Any:
        return await self.call("GET", path, params=params)

    async def post(self, path: str, body: Any = None, **params: Any) -> Any:
        return await self.call("POST", path, params=params, body=body if body is not None else {})


def csrf_token(key: str) -> str:
    """The form token of a signed-in key: only a holder of the key can compute it."""
    return hmac.new(b"tollgate-console-csrf", key.encode(), hashlib.sha256).hexdigest()[:32]


class RoleCache:
    """Whether a key is the master key (it reads the audit log), remembered for a minute so a
    page costs one call to its data, not two."""

    def __init__(self, ttl_s: float = 60.0) -> None:
        self.ttl_s = ttl_s
        self._seen: dict[str, tuple[bool, float]] = {}

    async def is_master(self, api: PublicApi) -> bool:
        digest = hashlib.sha256(api.key.encode()).hexdigest()
        hit = self._seen.get(digest)
        now = time.monotonic()
        if hit is not None and hit[1] > now:
            return hit[0]
        try:
            await api.get("/audit", page_size=1)
            master = True
        except ApiError as exc:
            if exc.status != 403:
                raise
            master = False
        self._seen[digest] = (master, now + self.ttl_s)
        return master
