"""Virtual key material: fresh keys, LiteLLM's shown abbreviation, and the stored hash a key
reference (plaintext or hash) names."""

from __future__ import annotations

import re
import secrets

from tollgate_admin.errors import BadRequestError
from tollgate_shared.redaction import KEY_PREFIX
from tollgate_shared.state import hash_key

_HASH_RE = re.compile(r"^[0-9a-f]{64}$")


def new_key() -> str:
    """A fresh virtual key: `sk-` plus 32 url-safe random characters."""
    return KEY_PREFIX + secrets.token_urlsafe(24)


def key_name(plaintext: str) -> str:
    """LiteLLM's abbreviation shown in place of the key: `sk-...abcd`."""
    return f"{KEY_PREFIX}...{plaintext[-4:]}"


def token_of(reference: str) -> str:
    """The stored hash for a key given as plaintext (`sk-...`) or already as its hash."""
    ref = reference.strip()
    if _HASH_RE.fullmatch(ref):
        return ref
    return hash_key(ref)


def check_custom_key(value: str, field: str = "key") -> None:
    if not value.startswith(KEY_PREFIX) or len(value) < 8:
        raise BadRequestError(
            f"{field}: a custom key must start with 'sk-' and be at least 8 characters "
            "(so it is never mistaken for a key hash)",
            field,
        )
