"""Who is calling the management API (the master key, or a virtual key reading itself) and who
a change is recorded as made by."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tollgate_admin.errors import ForbiddenError, UnauthorizedError
from tollgate_shared.state import hash_key

MASTER_KEY_CALLER = "master_key"

# Finds a stored key row by its hash (None when there is none).
KeyLookup = Callable[[str], Awaitable[Mapping[str, Any] | None]]


@dataclass(frozen=True)
class Actor:
    """Who makes a change, as the audit log records it."""

    changed_by: str
    api_key_hash: str


@dataclass(frozen=True)
class Caller:
    """An authenticated caller; `api_key_hash` is what audit events record."""

    api_key_hash: str
    is_master: bool
    user_id: str | None = None
    token: str | None = None  # the virtual key's own hash

    def changed_by(self, header: str | None) -> str:
        """LiteLLM's rule: the `litellm-changed-by` header, else who is calling."""
        if header and header.strip():
            return header.strip()[:256]
        if self.is_master:
            return MASTER_KEY_CALLER
        return self.user_id or self.api_key_hash

    def require_master(self) -> None:
        if not self.is_master:
            raise ForbiddenError(
                "this endpoint requires the master key; a virtual key may only read its own "
                "/key/info",
                "Authorization",
            )


async def authenticate(
    presented: str | None,
    master_key: str | None,
    find_key: KeyLookup,
    now: datetime | None = None,
) -> Caller:
    """The caller a presented key (`tollgate_shared.credentials.presented_key`) stands for."""
    if not presented:
        raise UnauthorizedError(
            "no API key: send `Authorization: Bearer <master key>` or `x-litellm-api-key`",
            "Authorization",
        )
    digest = hash_key(presented)
    if master_key and hmac.compare_digest(presented.encode(), master_key.encode()):
        return Caller(api_key_hash=digest, is_master=True)
    row = await find_key(digest)
    if row is None:
        raise UnauthorizedError(
            "invalid API key: not the master key and not a known key", "Authorization"
        )
    if row["blocked"]:
        raise ForbiddenError("this key is blocked", "Authorization")
    expires = row["expires"]
    if expires is not None and expires <= (now or datetime.now(UTC)):
        raise UnauthorizedError(f"this key expired at {expires.isoformat()}", "Authorization")
    return Caller(api_key_hash=digest, is_master=False, user_id=row["user_id"], token=digest)
