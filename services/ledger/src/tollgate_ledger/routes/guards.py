"""What guards the read routes: any presented key; the master key reads everything, a virtual
key only its own rows (the scope every route applies, whatever the query asks for)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from tollgate_ledger.service import ReadService
from tollgate_shared.credentials import presented_key
from tollgate_shared.state import hash_key


@dataclass
class ReadDeps:
    """What the read routes need: the read service and the master key that opens it."""

    reads: ReadService
    master_key: str | None


@dataclass(frozen=True)
class KeyScope:
    """Whose rows a request may read: everyone's (`key_hash` None: the master key, or an open
    ledger) or one virtual key's (its SHA-256 hash, as spend rows carry it)."""

    key_hash: str | None = None

    @property
    def is_master(self) -> bool:
        return self.key_hash is None

    def require_master(self, what: str) -> None:
        if self.key_hash is not None:
            raise PermissionDeniedException(f"{what} needs the master key")


# How a route asks for its scope: `key_scope: Scoped`.
Scoped = NamedDependency[KeyScope]


def _is_master(deps: ReadDeps, token: str) -> bool:
    return deps.master_key is not None and hmac.compare_digest(
        token.encode(), deps.master_key.encode()
    )


def read_guard(deps: ReadDeps) -> Any:
    """401 without a key, or with one that is neither the master key nor a live virtual key;
    a virtual key passes, scoped to its own rows by `key_scope` below."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if deps.master_key is None:
            return
        token = presented_key(connection.headers.get)
        if not token:
            raise NotAuthorizedException("No api key passed in: send 'Authorization: Bearer <key>'")
        if not _is_master(deps, token) and not deps.reads.key_may_read(hash_key(token)):
            raise NotAuthorizedException("Invalid key: not the master key nor a live virtual key")

    return guard


def scope_provider(deps: ReadDeps) -> Provide:
    """The `key_scope` dependency of every read route."""

    def key_scope(request: Request[Any, Any, Any]) -> KeyScope:
        token = presented_key(request.headers.get)
        if deps.master_key is None or token is None or _is_master(deps, token):
            return KeyScope()
        return KeyScope(hash_key(token))

    return Provide(key_scope, sync_to_thread=False)
