"""Before/after of an audit entry as rows of changed fields (secrets arrive masked already)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True)
class Change:
    field: str
    before: str | None
    after: str | None

    @property
    def kind(self) -> str:
        if self.before is None:
            return "added"
        if self.after is None:
            return "removed"
        return "changed"


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested objects as dotted paths, so a change deep in metadata shows as one row."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1] or "value": value} if prefix or value is not None else {}


def changes(before: Any, after: Any) -> list[Change]:
    """Fields that differ between `before` and `after` (either may be None), by path."""
    b, a = _flat(before), _flat(after)
    out = []
    for field in sorted(set(b) | set(a)):
        old = _text(b[field]) if field in b else None
        new = _text(a[field]) if field in a else None
        if old != new:
            out.append(Change(field, old, new))
    return out
