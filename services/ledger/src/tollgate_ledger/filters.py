"""The read API's filters: query parameters parsed into filter values, or a FilterError."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from tollgate_shared.state import hash_key

STATUSES = ("success", "failure")
TOTAL_ENTITIES = ("key", "team", "user", "end_user")
DAILY_DIMENSIONS = ("key", "team", "user", "end_user", "model", "tag")


class FilterError(ValueError):
    """A query parameter the read API cannot use; names the parameter."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


@dataclass(frozen=True)
class SpendLogFilter:
    request_id: str | None = None
    api_key: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    session_id: str | None = None
    status: str | None = None
    model: str | None = None
    key_alias: str | None = None
    end_user: str | None = None
    tag: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    min_spend: Decimal | None = None
    max_spend: Decimal | None = None


@dataclass(frozen=True)
class AuditFilter:
    object_id: str | None = None
    table_name: str | None = None
    action: str | None = None
    changed_by: str | None = None
    changed_by_api_key: str | None = None
    start: datetime | None = None
    end: datetime | None = None


_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d")


def parse_when(value: str | None, param: str, *, end_of_day: bool = False) -> datetime | None:
    """LiteLLM's date filters: `YYYY-MM-DD`, `YYYY-MM-DD HH:MM:SS`, or ISO 8601 (UTC if naive).

    A bare date used as an end bound covers that whole day.
    """
    if value is None or value == "":
        return None
    text = value.strip()
    parsed: datetime | None = None
    for fmt in _DATE_FORMATS:
        try:
            parsed = datetime.strptime(text, fmt)
        except ValueError:
            continue
        if fmt == "%Y-%m-%d" and end_of_day:
            parsed = parsed + timedelta(days=1) - timedelta(microseconds=1)
        break
    if parsed is None:
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise FilterError(
                param, f"{param} must be a date (YYYY-MM-DD or YYYY-MM-DD HH:MM:SS), got {value!r}"
            ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def date_range(
    start_date: str | None, end_date: str | None
) -> tuple[datetime | None, datetime | None]:
    """`start_date`/`end_date` as bounds; an end before the start is refused."""
    start = parse_when(start_date, "start_date")
    end = parse_when(end_date, "end_date", end_of_day=True)
    if start and end and start > end:
        raise FilterError("end_date", "end_date must not be before start_date")
    return start, end


def status_filter(value: str | None, param: str) -> str | None:
    if value is None or value == "":
        return None
    if value not in STATUSES:
        raise FilterError(param, f"{param} must be one of {', '.join(STATUSES)}, got {value!r}")
    return value


def money_filter(value: str | None, param: str) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        out = Decimal(value)
    except InvalidOperation:
        raise FilterError(param, f"{param} must be a number, got {value!r}") from None
    if not out.is_finite():
        raise FilterError(param, f"{param} must be a finite number")
    return out


def sort_ascending(sort_order: str) -> bool:
    if sort_order not in ("asc", "desc"):
        raise FilterError("sort_order", "sort_order must be asc or desc")
    return sort_order == "asc"


def total_entity_filter(value: str | None) -> str | None:
    if value and value not in TOTAL_ENTITIES:
        raise FilterError("entity", f"entity must be one of {', '.join(TOTAL_ENTITIES)}")
    return value or None


def key_filter(value: str | None) -> str | None:
    """`api_key` filter: a plaintext `sk-` key is hashed, a hash is used as given."""
    if not value:
        return None
    return hash_key(value) if value.startswith("sk-") else value


def total_pages(total: int, page_size: int) -> int:
    return -(-total // page_size) if page_size else 0


def page_envelope(
    data: list[Any], total: int, page: int, page_size: int, key: str = "data"
) -> dict[str, Any]:
    """`{data, total, page, page_size, total_pages}`: LiteLLM's paginated list shape."""
    return {
        key: data,
        "total": total,
        "page": page,
        "page_size": page_size,
        "total_pages": -(-total // page_size),
    }
