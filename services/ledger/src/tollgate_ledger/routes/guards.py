"""What guards the read routes: the master key, presented as every service reads a key."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler

from tollgate_ledger.service import ReadService
from tollgate_shared.credentials import presented_key


@dataclass
class ReadDeps:
    """What the read routes need: the read service and the master key that opens it."""

    reads: ReadService
    master_key: str | None


def master_key_guard(deps: ReadDeps) -> Any:
    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if deps.master_key is None:
            return
        token = presented_key(connection.headers.get)
        if not token:
            raise NotAuthorizedException(
                "No api key passed in: send 'Authorization: Bearer <master key>'"
            )
        if not hmac.compare_digest(token.encode(), deps.master_key.encode()):
            raise NotAuthorizedException("Invalid key: the ledger's read API needs the master key")

    return guard
