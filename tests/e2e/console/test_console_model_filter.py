"""The Logs page's model filter (`model` OR `model_group`), run as two index-ordered branches:
the same rows, order, pages and counts as the plain OR, with no row twice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from tollgate_ledger.app import migrate
from tollgate_ledger.filters import SpendLogFilter
from tollgate_ledger.partitions import partition_bounds, partition_name
from tollgate_ledger.projections.reads import LedgerReader

# (model, model_group) of each seeded call, newest last: the filter `gpt-4o` must find the
# calls whose model or group is gpt-4o, once each, whichever name matched.
CALLS = [
    ("gpt-4o", "gpt-4o"),  # both names match
    ("openai/gpt-4o", "gpt-4o"),  # the group matches
    ("gpt-4o", "fast"),  # the deployment's model matches
    ("claude", "smart"),  # neither
    ("openai/gpt-4o", None),  # neither (no group)
    ("gpt-4o", None),  # the model matches, no group
] * 5


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    await migrate(database_url)
    c = await asyncpg.connect(database_url)
    await c.execute("SET search_path TO ledger")
    day = datetime.now(UTC).date()
    lo, hi = partition_bounds(day)
    await c.execute(
        f"CREATE TABLE IF NOT EXISTS {partition_name('spend_logs', day)} PARTITION OF spend_logs"
        f" FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')"
    )
    t0 = lo + timedelta(minutes=1)
    await c.executemany(
        """INSERT INTO spend_logs (request_id, call_type, "startTime", "endTime", model,
               model_group, status, event_id, team_id)
           VALUES ($1, 'acompletion', $2, $2, $3, $4, 'success', $1, $5)""",
        [
            (f"r{n:02d}", t0 + timedelta(seconds=n // 2), m, g, "t-even" if n % 2 else "t-odd")
            for n, (m, g) in enumerate(CALLS)
        ],
    )
    yield c
    await c.close()


def expected(team: str | None = None) -> list[str]:
    """The request ids the filter `gpt-4o` must give, newest first (ties by request id)."""
    rows = [
        (n // 2, f"r{n:02d}")
        for n, (m, g) in enumerate(CALLS)
        if "gpt-4o" in (m, g) and (team is None or team == ("t-even" if n % 2 else "t-odd"))
    ]
    return [rid for _, rid in sorted(rows, reverse=True)]


@pytest.mark.parametrize("count_limit", [None, 7, 1000])
async def test_model_filter_pages_and_counts(
    conn: asyncpg.Connection, count_limit: int | None
) -> None:
    reader = LedgerReader("ledger")
    want = expected()
    assert len(want) == 20
    seen: list[str] = []
    for offset in range(0, 25, 6):
        rows, total = await reader.spend_logs(
            conn, SpendLogFilter(model="gpt-4o"), limit=6, offset=offset, count_limit=count_limit
        )
        seen += [r["request_id"] for r in rows]
        assert total == (20 if count_limit is None or count_limit >= 20 else count_limit + 1)
    assert seen == want

    asc, _ = await reader.spend_logs(
        conn, SpendLogFilter(model="gpt-4o"), limit=50, offset=0, ascending=True
    )
    assert [r["request_id"] for r in asc] == sorted(want, key=want.index, reverse=True)


async def test_model_filter_with_other_conditions(conn: asyncpg.Connection) -> None:
    reader = LedgerReader("ledger")
    rows, total = await reader.spend_logs(
        conn, SpendLogFilter(model="gpt-4o", team_id="t-even"), limit=50, offset=0
    )
    assert [r["request_id"] for r in rows] == expected("t-even")
    assert total == len(expected("t-even"))
    rows, total = await reader.spend_logs(
        conn, SpendLogFilter(model="smart"), limit=50, offset=0, count_limit=100
    )
    assert total == 5
    assert {r["model_group"] for r in rows} == {"smart"}
