"""A destination (one sink's endpoint and credentials) and the helpers sinks build one with.

Pure: callback variables and the process environment in, a `Destination` out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit


@dataclass(frozen=True)
class Destination:
    """Where a sink delivers: identified by `key` (sink, endpoint, credentials digest)."""

    sink: str
    key: str
    label: str = field(compare=False)
    options: Mapping[str, Any] = field(compare=False, hash=False)


def digest(*parts: Any) -> str:
    """A short stable digest of a destination's identity (endpoint and credentials)."""
    raw = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(raw).hexdigest()[:20]


def pick(vars_: Mapping[str, Any], *names: str) -> str | None:
    """The first of `names` set (non-empty) in `vars_`."""
    for n in names:
        v = vars_.get(n)
        if v not in (None, ""):
            return str(v)
    return None


def safe_url(url: str) -> str:
    """A URL without credentials or query string, for labels."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def parse_headers(raw: Any) -> dict[str, str]:
    """OTLP-style `k=v,k2=v2` (values URL-encoded), or a mapping."""
    if not raw:
        return {}
    if isinstance(raw, Mapping):
        return {str(k): str(v) for k, v in raw.items()}
    out: dict[str, str] = {}
    for part in str(raw).split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            out[unquote(k.strip())] = unquote(v.strip())
    return out


def truthy(value: Any) -> bool | None:
    """A config flag as a bool (`true`/`1`/`yes`, `false`/`0`/`no`); None when unset or unclear."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "0", "no"):
        return False
    return None
