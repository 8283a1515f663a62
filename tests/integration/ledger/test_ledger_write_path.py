"""The spend write path (projections/spend.py): sessions, daily rows and totals summed in
Python agree with the spend logs they summarise, across batches, redeliveries and days."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from typing import Any

import asyncpg
from ledger_support import T0, make_completed, make_failed

from tollgate_ledger.policy import LedgerPolicy
from tollgate_ledger.projections.spend import BatchResult, SpendProjection
from tollgate_ledger.rows import spend_row
from tollgate_shared import names
from tollgate_shared.events import LlmRequestFinished

# What each aggregate must equal, recomputed from this team's spend logs with the formulas
# the tables are defined by (the single statement the ledger used to run).
DAILY_FROM_LOGS = """
SELECT day, dimension, dimension_id, sum(spend) AS spend, sum(prompt_tokens) AS prompt_tokens,
    sum(completion_tokens) AS completion_tokens, sum(total_tokens) AS total_tokens,
    count(*) AS requests, count(*) FILTER (WHERE status = 'success') AS successes,
    count(*) FILTER (WHERE status <> 'success') AS failures
FROM (
    SELECT ("startTime" AT TIME ZONE 'UTC')::date AS day, d.dimension, d.dimension_id, f.*
    FROM ledger.spend_logs f CROSS JOIN LATERAL (VALUES
        ('key', NULLIF(f.api_key, '')), ('team', f.team_id), ('user', NULLIF(f."user", '')),
        ('end_user', f.end_user), ('model', NULLIF(f.model_group, ''))
    ) AS d(dimension, dimension_id)
    WHERE f.team_id = $1 AND d.dimension_id IS NOT NULL
    UNION ALL
    SELECT ("startTime" AT TIME ZONE 'UTC')::date, 'tag', tag.value, f.*
    FROM ledger.spend_logs f CROSS JOIN LATERAL jsonb_array_elements_text(f.request_tags) tag
    WHERE f.team_id = $1
) x
GROUP BY day, dimension, dimension_id ORDER BY day, dimension, dimension_id
"""
DAILY_STORED = """
SELECT day, dimension, dimension_id, spend, prompt_tokens, completion_tokens, total_tokens,
    requests, successes, failures
FROM ledger.daily_spend WHERE dimension_id LIKE $1 || '%' ORDER BY day, dimension, dimension_id
"""
SESSIONS_FROM_LOGS = """
SELECT session_id, min("startTime") AS first_seen, max("endTime") AS last_seen,
    count(*) AS request_count, count(*) FILTER (WHERE status = 'success') AS success_count,
    count(*) FILTER (WHERE status <> 'success') AS failure_count, sum(spend) AS spend,
    sum(total_tokens) AS total_tokens
FROM ledger.spend_logs WHERE team_id = $1 AND session_id IS NOT NULL
GROUP BY session_id ORDER BY session_id
"""
SESSIONS_STORED = """
SELECT session_id, first_seen, last_seen, request_count, success_count, failure_count, spend,
    total_tokens
FROM ledger.sessions WHERE session_id LIKE $1 || '%' ORDER BY session_id
"""
TOTALS_FROM_LOGS = """
SELECT d.entity, d.entity_id, sum(f.spend) AS spend, count(*) AS requests,
    sum(f.total_tokens) AS total_tokens
FROM ledger.spend_logs f CROSS JOIN LATERAL (VALUES
    ('key', NULLIF(f.api_key, '')), ('team', f.team_id), ('user', NULLIF(f."user", '')),
    ('end_user', f.end_user)
) AS d(entity, entity_id)
WHERE f.team_id = $1 AND d.entity_id IS NOT NULL
GROUP BY d.entity, d.entity_id ORDER BY d.entity, d.entity_id
"""
TOTALS_STORED = """
SELECT entity, entity_id, spend, requests, total_tokens
FROM ledger.spend_totals WHERE entity_id LIKE $1 || '%' ORDER BY entity, entity_id
"""


async def write(pool: asyncpg.Pool, events: list[LlmRequestFinished]) -> BatchResult:
    projection = SpendProjection(names.SCHEMA_LEDGER)
    async with pool.acquire() as conn, conn.transaction():
        return await projection.write(conn, [spend_row(e, LedgerPolicy()) for e in events])


def calls(team: str) -> list[LlmRequestFinished]:
    """Two days, two sessions, a failure, a repeated tag, an empty end user and no key."""

    def extra(n: int) -> dict[str, Any]:
        return {
            "end_user": f"{team}-c{n % 3}" if n % 3 else "",
            "model_group": f"{team}-model",
            "session_id": f"{team}-sess-{n % 2}",
            "tags": [f"{team}-a", f"{team}-b", f"{team}-a"] if n % 4 == 0 else [f"{team}-a"],
            "start_time": T0 - timedelta(days=n % 2),
            "end_time": T0 - timedelta(days=n % 2) + timedelta(seconds=n),
        }

    out: list[LlmRequestFinished] = [make_completed(team, n, **extra(n)) for n in range(12)]
    out.append(make_failed(team, 12, **extra(12)))
    out.append(make_completed(team, 13, **{**extra(13), "api_key_hash": None, "user_id": ""}))
    return out


async def rows(pool: asyncpg.Pool, sql: str, team: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in await pool.fetch(sql, team)]


async def test_aggregates_equal_what_the_spend_logs_sum_to(pool: asyncpg.Pool, team: str) -> None:
    events = calls(team)
    first = await write(pool, events[:6])
    # The second batch redelivers three of the first, in another order, with new calls.
    second = await write(pool, [*events[6:10], *events[3::-1][:3]])
    third = await write(pool, events)
    assert (first.inserted, second.inserted, third.inserted) == (6, 4, 4)
    assert (first.logs, second.logs, third.logs) == (6, 4, 4)

    # (Rows of an empty end user are shared by every test: compared by their own.)
    daily = await rows(pool, DAILY_STORED, team)
    from_logs = await rows(pool, DAILY_FROM_LOGS, team)
    assert daily == [r for r in from_logs if r[2]]
    assert sum(r[7] for r in daily if r[1:3] == ("tag", f"{team}-a")) == 14 + 4  # 4 list it twice
    assert [r[:3] for r in from_logs if not r[2]] == [
        (day, "end_user", "") for day in sorted({r[0] for r in from_logs})
    ]
    assert await rows(pool, SESSIONS_STORED, team) == await rows(pool, SESSIONS_FROM_LOGS, team)
    assert await rows(pool, TOTALS_STORED, team) == [
        r for r in await rows(pool, TOTALS_FROM_LOGS, team) if r[1].startswith(team)
    ]
    totals = {(t.entity, t.entity_id): t.spend for t in third.totals}
    assert totals[("team", team)] == sum((e.spend for e in events), Decimal(0))

    again = await write(pool, events)  # all seen: nothing at all
    assert (again.inserted, again.logs, again.sessions, again.totals) == (0, 0, 0, [])


async def test_a_call_already_logged_without_its_record_is_counted_not_logged_twice(
    pool: asyncpg.Pool, team: str
) -> None:
    logged, new = make_completed(team, 1), make_completed(team, 2)
    await write(pool, [logged])
    # Its idempotency record is gone (say, restored from an older backup).
    await pool.execute(
        "DELETE FROM ledger.processed_requests WHERE request_id = $1", logged.request_id
    )

    result = await write(pool, [logged, new])

    assert (result.inserted, result.logs) == (2, 1)
    n = await pool.fetchval("SELECT count(*) FROM ledger.spend_logs WHERE team_id = $1", team)
    assert n == 2
    total = await pool.fetchval(
        "SELECT requests FROM ledger.spend_totals WHERE entity = 'team' AND entity_id = $1", team
    )
    assert total == 3  # as the single statement did: the record decides what counts


async def test_two_transactions_writing_the_same_calls_count_them_once(
    pool: asyncpg.Pool, team: str
) -> None:
    """A redelivered batch committing beside its first delivery (two commits in flight, or
    two replicas), its calls in another order: one of them counts each call, neither
    deadlocks."""
    events = calls(team)
    results = await asyncio.gather(write(pool, events), write(pool, events[::-1]))
    assert sum(r.inserted for r in results) == len(events)
    assert await rows(pool, TOTALS_STORED, team) == [
        r for r in await rows(pool, TOTALS_FROM_LOGS, team) if r[1].startswith(team)
    ]
    n = await pool.fetchval("SELECT count(*) FROM ledger.spend_logs WHERE team_id = $1", team)
    assert n == len(events)
