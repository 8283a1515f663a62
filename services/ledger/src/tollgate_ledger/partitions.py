"""Daily partitions of the spend tables: their names, bounds, and which retention drops."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

# Partitioned by day on "startTime"; retention drops whole partitions of both.
PARTITIONED_TABLES = ("spend_logs", "processed_requests")

_PARTITION_DAY = re.compile(r"_p(\d{8})$")


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def partition_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=UTC)
    return start, start + timedelta(days=1)


def partitions_ahead(now: datetime) -> list[date]:
    """The days whose partitions must exist before traffic reaches them: today, tomorrow."""
    today = now.date()
    return [today, today + timedelta(days=1)]


def partitions_to_drop(names: Iterable[str], now: datetime, retention: timedelta) -> list[str]:
    """Partitions whose whole day ended before `now - retention` (never a partial day)."""
    cutoff = now - retention
    out = []
    for name in names:
        m = _PARTITION_DAY.search(name)
        if not m:
            continue
        day = datetime.strptime(m.group(1), "%Y%m%d").replace(tzinfo=UTC).date()
        if partition_bounds(day)[1] <= cutoff:
            out.append(name)
    return sorted(out)


def retention_check_s(retention_interval: timedelta) -> float:
    """How often a ledger asks whether a cleanup is due: a tenth of the interval, between
    once a second and once a minute (the run record, not this, spaces the cleanups)."""
    return min(max(retention_interval.total_seconds() / 10, 1.0), 60.0)
