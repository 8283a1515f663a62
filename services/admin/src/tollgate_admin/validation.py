"""Pure rules of the control plane: durations, key material, id checks and secret masking."""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from tollgate_admin.errors import BadRequestError
from tollgate_shared import names
from tollgate_shared.config import ENV_PREFIX
from tollgate_shared.durations import parse_duration
from tollgate_shared.sealing import Sealer, sealed_hint
from tollgate_shared.state import hash_key

MASKED = "********"
KEY_PREFIX = "sk-"
NEVER_EXPIRES = "-1"

_ID_RE = re.compile(names.ID_PATTERN)
_HASH_RE = re.compile(r"^[0-9a-f]{64}$")

# Names whose values are credentials (matched on name segments, e.g. `langfuse_secret_key`).
_SECRET_SEGMENTS = frozenset(
    {
        "secret",
        "key",
        "password",
        "passwd",
        "pwd",
        "token",
        "apikey",
        "credential",
        "credentials",
        "auth",
        "authorization",
        "private",
        "signature",
        "cookie",
    }
)
_SECRET_SUBSTRINGS = ("secret", "password", "api_key", "apikey", "access_key", "private_key")


# --- durations -------------------------------------------------------------------
def duration_end(duration: str, start: datetime, field: str = "duration") -> datetime:
    """`start` plus a LiteLLM duration ("30s", "15m", "1h", "7d", "2w", "1mo")."""
    try:
        return parse_duration(duration).after(start)
    except ValueError as exc:
        raise BadRequestError(f"{field}: {exc}", field) from None


def check_duration(duration: str | None, field: str, now: datetime) -> None:
    """Reject an unparseable duration (e.g. a `budget_duration`) before it is stored."""
    if duration is not None:
        duration_end(duration, now, field)


def key_expiry(duration: str | None, now: datetime) -> datetime | None:
    """When a key given `duration` expires: None for no duration or LiteLLM's "-1"."""
    if duration is None or duration.strip() == NEVER_EXPIRES:
        return None
    return duration_end(duration, now, "duration")


# --- key material --------------------------------------------------------------------
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


# --- ids -------------------------------------------------------------------------------
def check_id(value: str | None, field: str) -> None:
    if value is not None and not _ID_RE.fullmatch(value):
        raise BadRequestError(f"{field}: {value!r} must match {names.ID_PATTERN}", field)


# --- secrets ---------------------------------------------------------------------------
def is_secret_name(name: str) -> bool:
    lowered = name.lower()
    if any(s in lowered for s in _SECRET_SUBSTRINGS):
        return True
    return any(seg in _SECRET_SEGMENTS for seg in re.split(r"[^a-z0-9]+", lowered) if seg)


def mask_value(value: Any) -> Any:
    """A credential as it may be shown: `os.environ/` references stay, the rest is masked."""
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        return value
    if value is None or isinstance(value, bool):
        return value
    hint = sealed_hint(value) if isinstance(value, str) else None
    if hint is not None:
        return MASKED + hint
    text = str(value)
    if len(text) >= 16:
        return MASKED + text[-4:]
    return MASKED


def mask_secrets(value: Any) -> Any:
    """A copy of `value` whose secret-named entries are masked, at any depth."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if isinstance(k, str) and is_secret_name(k) and not isinstance(v, Mapping | list):
                out[k] = mask_value(v)
            else:
                out[k] = mask_secrets(v)
        return out
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    return value


def seal_secrets(value: Any, sealer: Sealer | None) -> Any:
    """A copy of `value` whose credential-named strings are sealed for storage, at any depth
    (the names `mask_secrets` masks; `os.environ/` references stay as they are)."""
    if sealer is None:
        return value
    if isinstance(value, Mapping):
        return {
            k: sealer.seal(v)
            if isinstance(k, str) and is_secret_name(k) and isinstance(v, str)
            else seal_secrets(v, sealer)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [seal_secrets(v, sealer) for v in value]
    return value


def mask_callback_vars(callback_vars: Mapping[str, Any]) -> dict[str, Any]:
    """Callback variables for display: every credential-named value masked."""
    return {k: mask_value(v) if is_secret_name(k) else v for k, v in callback_vars.items()}


def mask_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Key or team metadata for display: secrets masked, including `logging[].callback_vars`."""
    masked: dict[str, Any] = mask_secrets(metadata)
    logging = metadata.get("logging")
    if isinstance(logging, list):
        masked["logging"] = [
            {
                **mask_secrets(entry),
                "callback_vars": mask_callback_vars(entry.get("callback_vars") or {}),
            }
            if isinstance(entry, Mapping) and isinstance(entry.get("callback_vars"), Mapping)
            else mask_secrets(entry)
            for entry in logging
        ]
    return masked


# --- JSON values that PostgreSQL accepts --------------------------------------------------
def check_storable(value: Any, field: str, depth: int = 0) -> None:
    """Reject what PostgreSQL text/jsonb cannot hold (NUL, lone surrogates) or absurd nesting."""
    if depth > 32:
        raise BadRequestError(f"{field}: nested more than 32 levels deep", field)
    if isinstance(value, str):
        check_text(value, field)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            check_text(str(k), field)
            check_storable(v, f"{field}.{k}", depth + 1)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            check_storable(v, f"{field}[{i}]", depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise BadRequestError(f"{field}: NaN and infinity are not allowed", field)


def check_text(value: str, field: str) -> None:
    if "\x00" in value:
        raise BadRequestError(f"{field}: must not contain NUL characters", field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequestError(f"{field}: must be valid UTF-8 text", field) from None


# --- changes -----------------------------------------------------------------------------
def changed_fields(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `after` that differ from `before` (LiteLLM's `updated_values`)."""
    return {k: v for k, v in after.items() if before.get(k) != v}


def bearer_token(authorization: str | None, litellm_key: str | None) -> str | None:
    """The key from LiteLLM's `x-litellm-api-key` header or `Authorization: Bearer ...`."""
    for raw in (litellm_key, authorization):
        if raw:
            scheme, _, rest = raw.strip().partition(" ")
            value = rest.strip() if scheme.lower() == "bearer" else raw.strip()
            if value:
                return value
    return None
