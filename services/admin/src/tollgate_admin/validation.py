"""Checks of request values before they are stored: durations, ids and JSON PostgreSQL accepts;
each refusal is a `BadRequestError` naming the field."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from tollgate_admin.errors import BadRequestError
from tollgate_shared import names
from tollgate_shared.durations import parse_duration

NEVER_EXPIRES = "-1"

_ID_RE = re.compile(names.ID_PATTERN)


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


# --- ids -------------------------------------------------------------------------------
def check_id(value: str | None, field: str) -> None:
    if value is not None and not _ID_RE.fullmatch(value):
        raise BadRequestError(f"{field}: {value!r} must match {names.ID_PATTERN}", field)


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
