"""Which header carries the key a caller presents: one rule for every service.

LiteLLM reads its own `x-litellm-api-key` header first (so a client can keep
`Authorization` for something else), then `Authorization: Bearer <key>`; a bare
`Authorization: <key>` is accepted too. Every service asks `presented_key`, so a
request carrying both headers is checked against the same key everywhere.
"""

from __future__ import annotations

from collections.abc import Callable

from tollgate_shared import names

AUTHORIZATION = "authorization"
# In the order they are read; the first non-empty one wins.
KEY_HEADERS: tuple[str, ...] = (names.HDR_LITELLM_KEY, AUTHORIZATION)


def key_from_header(raw: str | None) -> str | None:
    """The key in one header's value: `Bearer <key>` or the bare key; None when empty."""
    if not raw:
        return None
    text = raw.strip()
    scheme, _, rest = text.partition(" ")
    value = rest.strip() if scheme.lower() == "bearer" else text
    return value or None


def presented_key(get: Callable[[str], str | None]) -> str | None:
    """The key a request presents, given its header lookup (lower-case names)."""
    for header in KEY_HEADERS:
        found = key_from_header(get(header))
        if found:
            return found
    return None
