"""Which names hold credentials, and how a credential is shown: one rule for every service.

Admin masks what it returns, the ledger masks audit values, the alerter masks
management alerts and the exporter keeps credentials out of exports; all of them
ask `is_secret_name` and show values through `mask_value`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tollgate_shared.config import ENV_PREFIX
from tollgate_shared.sealing import sealed_hint

MASKED = "********"
KEY_PREFIX = "sk-"

# A name is split on anything not a letter or digit; one of these segments makes it
# a credential (`langfuse_secret_key`, `x-api-key`, `Authorization`, `sentry_dsn`).
_SECRET_SEGMENTS = frozenset(
    {
        "secret",
        "password",
        "passwd",
        "pwd",
        "token",
        "apikey",
        "credential",
        "credentials",
        "auth",
        "authorization",
        "bearer",
        "cookie",
        "signature",
        "private",
        "dsn",
    }
)
# Spelled together or apart, these always name a credential (`DD_API_KEY`, `webhook_url`:
# a Slack or Discord webhook URL is itself the credential).
_SECRET_PHRASES = re.compile(
    r"(secret|password|api[_-]?key|access[_-]?key|private[_-]?key|webhook[_-]?url|"
    r"auth[_-]?token|access[_-]?token|refresh[_-]?token)",
    re.IGNORECASE,
)
_SEGMENT_SPLIT = re.compile(r"[^a-z0-9]+")
# Plaintext virtual keys are masked wherever they turn up, whatever their field's name.
_PLAIN_KEY_MIN_LEN = 20


def is_secret_name(name: str) -> bool:
    """Whether a field called `name` holds a credential.

    A name is a credential's when it contains a secret phrase, has a secret segment,
    or ends in the segment `key` (`key`, `langfuse_public_key`; not `key_alias`).
    """
    if _SECRET_PHRASES.search(name):
        return True
    segments = [s for s in _SEGMENT_SPLIT.split(name.lower()) if s]
    if not segments:
        return False
    return segments[-1] in ("key", "keys") or any(s in _SECRET_SEGMENTS for s in segments)


def mask_value(value: Any) -> Any:
    """A credential as it may be shown: `os.environ/` references stay, the rest is masked.

    Keys keep LiteLLM's abbreviation (`sk-...abcd`), sealed values their stored hint,
    other values of 16 characters or more their last four; shorter ones nothing.
    """
    if value is None or isinstance(value, bool):
        return value
    text = value if isinstance(value, str) else str(value)
    if text.startswith(ENV_PREFIX):
        return text
    hint = sealed_hint(text)
    if hint is not None:
        return MASKED + hint
    if text.startswith(KEY_PREFIX) and len(text) >= _PLAIN_KEY_MIN_LEN:
        return f"{KEY_PREFIX}...{text[-4:]}"
    if len(text) >= 16:
        return MASKED + text[-4:]
    return MASKED


def mask_secrets(value: Any) -> Any:
    """A copy of `value` with every credential masked, at any depth.

    Scalars under a secret name are masked; so is any string that is a plaintext
    virtual key, whatever its field is called. The input is never mutated.
    """
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
    if isinstance(value, str) and value.startswith(KEY_PREFIX) and len(value) >= _PLAIN_KEY_MIN_LEN:
        return mask_value(value)
    return value
