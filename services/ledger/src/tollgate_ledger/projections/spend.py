"""Writes spend batches set-based: the idempotency record first, then COPY and one upsert
per aggregate table, all in the caller's transaction.

Idempotency lives in `processed_requests`: the batch's request ids go in as arrays with
ON CONFLICT DO NOTHING, and only the ids that insert returns are new. Only the new rows
are COPYed into spend_logs, and only they are summed (in Python, `aggregates`) into
sessions, daily_spend and spend_totals, one `unnest` upsert each. A redelivered batch
therefore adds nothing, and the whole effect commits before any message is acknowledged
(a second replica writing the same ids waits on their index entries, then finds them
taken). The same statement queues each touched total in `spend_announcements` (the
outbox the announcer relays), so what a committed batch must announce survives a crash.
A key's total goes to the newest hash of the key (`key_rotations`, read under the rotation
lock), so a call made before a rotation and recorded after it counts for the rotated key.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from tollgate_ledger.aggregates import aggregate
from tollgate_ledger.partitions import PARTITIONED_TABLES, partition_bounds, partition_name
from tollgate_ledger.policy import LedgerPolicy
from tollgate_ledger.rows import SPEND_COLUMNS, SpendRow, days_of, dedupe, spend_row
from tollgate_shared import names
from tollgate_shared.events import LlmRequestFinished

# Rotations of one key followed through `key_rotations` at most (a chain is one per
# rotation of the same key; new hashes are fresh, so it has no cycle).
MAX_ROTATION_CHAIN = 32


def _claim_sql(schema: str) -> str:
    # How many ids were new, and which only when not all of them were (usually all are).
    # In key order, so two transactions claiming the same ids (a redelivery beside its
    # first delivery) wait for each other instead of deadlocking. It also takes the key
    # rotation lock shared (see `SpendProjection.rotated_keys`), saving a round trip.
    return f"""
WITH claimed AS (
    INSERT INTO "{schema}".processed_requests (request_id, "startTime", event_id)
    SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[]) ORDER BY 1, 2
    ON CONFLICT DO NOTHING
    RETURNING request_id
)
SELECT count(*) AS new, CASE WHEN count(*) < $4 THEN array_agg(request_id) END AS ids,
    (SELECT pg_advisory_xact_lock_shared(hashtext($5))) IS NULL AS rotation_lock
FROM claimed
"""


def _logged_sql(schema: str) -> str:
    return f"""
SELECT request_id FROM "{schema}".spend_logs
WHERE (request_id, "startTime") IN (SELECT * FROM unnest($1::text[], $2::timestamptz[]))
"""


def _aggregates_sql(schema: str) -> str:
    s = f'"{schema}"'
    return f"""
WITH sess AS (
    INSERT INTO {s}.sessions AS t (session_id, first_seen, last_seen, request_count,
        success_count, failure_count, spend, prompt_tokens, completion_tokens, total_tokens)
    SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::bigint[],
        $5::bigint[], $6::bigint[], $7::numeric[], $8::bigint[], $9::bigint[], $10::bigint[])
    ON CONFLICT (session_id) DO UPDATE SET
        first_seen = LEAST(t.first_seen, EXCLUDED.first_seen),
        last_seen = GREATEST(t.last_seen, EXCLUDED.last_seen),
        request_count = t.request_count + EXCLUDED.request_count,
        success_count = t.success_count + EXCLUDED.success_count,
        failure_count = t.failure_count + EXCLUDED.failure_count,
        spend = t.spend + EXCLUDED.spend,
        prompt_tokens = t.prompt_tokens + EXCLUDED.prompt_tokens,
        completion_tokens = t.completion_tokens + EXCLUDED.completion_tokens,
        total_tokens = t.total_tokens + EXCLUDED.total_tokens
), daily AS (
    INSERT INTO {s}.daily_spend AS t (day, dimension, dimension_id, spend, prompt_tokens,
        completion_tokens, total_tokens, requests, successes, failures)
    SELECT * FROM unnest($11::date[], $12::text[], $13::text[], $14::numeric[], $15::bigint[],
        $16::bigint[], $17::bigint[], $18::bigint[], $19::bigint[], $20::bigint[])
    ON CONFLICT (day, dimension, dimension_id) DO UPDATE SET
        spend = t.spend + EXCLUDED.spend,
        prompt_tokens = t.prompt_tokens + EXCLUDED.prompt_tokens,
        completion_tokens = t.completion_tokens + EXCLUDED.completion_tokens,
        total_tokens = t.total_tokens + EXCLUDED.total_tokens,
        requests = t.requests + EXCLUDED.requests,
        successes = t.successes + EXCLUDED.successes,
        failures = t.failures + EXCLUDED.failures
), totals AS (
    INSERT INTO {s}.spend_totals AS t (entity, entity_id, spend, requests, total_tokens,
        last_alias, updated_at)
    SELECT entity, entity_id, spend, requests, total_tokens, alias, now()
    FROM unnest($21::text[], $22::text[], $23::numeric[], $24::bigint[], $25::bigint[],
        $26::text[]) AS u(entity, entity_id, spend, requests, total_tokens, alias)
    ON CONFLICT (entity, entity_id) DO UPDATE SET
        spend = t.spend + EXCLUDED.spend,
        requests = t.requests + EXCLUDED.requests,
        total_tokens = t.total_tokens + EXCLUDED.total_tokens,
        last_alias = COALESCE(EXCLUDED.last_alias, t.last_alias),
        updated_at = now()
    RETURNING entity, entity_id, spend - period_base AS spend, period_start
), queued AS (
    INSERT INTO {s}.spend_announcements AS a (entity, entity_id, spend, period_start)
    SELECT entity, entity_id, spend, period_start FROM totals ORDER BY entity, entity_id
    ON CONFLICT (entity, entity_id) DO UPDATE SET
        spend = EXCLUDED.spend, period_start = EXCLUDED.period_start, queued_at = now()
)
SELECT entity, entity_id, spend, period_start FROM totals
"""


@dataclass(frozen=True)
class TotalAfter:
    """A spend total as it stands after the committed batch: spend in the current budget
    period (lifetime spend when the entity has no `budget_duration`)."""

    entity: str
    entity_id: str
    spend: Decimal
    period_start: datetime | None = None


@dataclass(frozen=True)
class BatchResult:
    inserted: int = 0
    logs: int = 0
    sessions: int = 0
    daily: int = 0
    totals: list[TotalAfter] = field(default_factory=list)
    # The partition days this transaction made sure of (`remember_partitions` once it
    # has committed).
    partition_days: list[date] = field(default_factory=list)


class SpendProjection:
    """The spend tables of one schema (`ledger`, or a scratch schema during rebuild)."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self._claim_sql = _claim_sql(schema)
        self._logged_sql = _logged_sql(schema)
        self._aggregates_sql = _aggregates_sql(schema)
        self._known_partitions: set[date] = set()

    def forget_partitions(self) -> None:
        """Partitions were dropped: check each again next time."""
        self._known_partitions.clear()

    def remember_partitions(self, days: Iterable[date]) -> None:
        """Skip checking these days from now on: call once the transaction that made sure
        of them (`ensure_partitions`) has committed, so a transaction beside it never
        counts on a partition another one may still roll back.

        Only today's and later partitions are remembered: an older one may be dropped by
        retention on another replica at any time, so it is checked in each batch (under
        the partition's lock, which retention takes to drop it).
        """
        today = datetime.now(UTC).date()
        self._known_partitions.update(day for day in days if day >= today)

    async def ensure_partitions(self, conn: asyncpg.Connection, days: Iterable[date]) -> list[date]:
        """Create the daily partitions the batch needs, in the caller's transaction;
        returns the days it made sure of (see `remember_partitions`)."""
        checked = sorted(set(days) - self._known_partitions)
        for day in checked:
            start, end = partition_bounds(day)
            for table in PARTITIONED_TABLES:
                name = partition_name(table, day)
                # Two writers creating the same partition would race; serialise them.
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext($1))", f"{self.schema}.{name}"
                )
                await conn.execute(
                    f'CREATE TABLE IF NOT EXISTS "{self.schema}"."{name}" '
                    f'PARTITION OF "{self.schema}"."{table}" '
                    f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
                )
        return checked

    async def write(self, conn: asyncpg.Connection, rows: Sequence[SpendRow]) -> BatchResult:
        """Write one batch; call inside a transaction and commit before acknowledging."""
        unique = dedupe(rows)
        if not unique:
            return BatchResult()
        partition_days = await self.ensure_partitions(conn, days_of(unique))
        claimed = await conn.fetchrow(
            self._claim_sql,
            [r.request_id for r in unique],
            [r.start_time for r in unique],
            [r.event_id for r in unique],
            len(unique),
            self._rotation_lock,
        )
        assert claimed is not None
        if not claimed["new"]:
            return BatchResult(partition_days=partition_days)
        new = unique
        if claimed["ids"] is not None:
            new_ids = set(claimed["ids"])
            new = [r for r in unique if r.request_id in new_ids]
        logs = await self._copy_logs(conn, [r for r in new if r.store_log])
        sums = aggregate(new)
        keys = sums.keys()
        if keys:
            sums.move_keys(await self.rotated_keys(conn, keys))
        totals = await conn.fetch(
            self._aggregates_sql,
            *sums.session_columns(),
            *sums.daily_columns(),
            *sums.total_columns(),
        )
        return BatchResult(
            inserted=len(new),
            logs=logs,
            sessions=len(sums.sessions),
            daily=len(sums.daily),
            totals=[TotalAfter(*t) for t in totals],
            partition_days=partition_days,
        )

    async def _copy_logs(self, conn: asyncpg.Connection, rows: list[SpendRow]) -> int:
        """COPY the new calls' spend_logs rows; one already there (its idempotency record
        gone) is skipped, not an error. Returns how many were written."""
        if not rows:
            return 0
        try:
            async with conn.transaction():  # a savepoint, for the rare row already logged
                await self._copy(conn, [r.values for r in rows])
        except asyncpg.UniqueViolationError:
            logged = await conn.fetch(
                self._logged_sql, [r.request_id for r in rows], [r.start_time for r in rows]
            )
            have = {rec[0] for rec in logged}
            rows = [r for r in rows if r.request_id not in have]
            await self._copy(conn, [r.values for r in rows])
        return len(rows)

    async def _copy(self, conn: asyncpg.Connection, records: list[tuple[Any, ...]]) -> None:
        if records:
            await conn.copy_records_to_table(
                "spend_logs", records=records, columns=SPEND_COLUMNS, schema_name=self.schema
            )

    async def start_periods(
        self, conn: asyncpg.Connection, periods: Sequence[tuple[str, str, datetime]]
    ) -> list[TotalAfter]:
        """Begin each entity's current budget period `(entity, entity_id, start)`.

        A total whose recorded period began before `start` (or was never set, by a row
        older than `start`) gets its base moved up to its lifetime spend: what it spends
        from here on counts against the new period. A row first written inside the
        period keeps its base of 0. Already-current rows are left alone, so the job is
        idempotent and replicas may run it side by side. Returns the totals it reset.
        """
        if not periods:
            return []
        rows = await conn.fetch(
            f"""
            WITH reset AS (
                UPDATE "{self.schema}".spend_totals AS t SET
                    period_base = CASE WHEN t.period_start IS NULL AND t.created_at >= p.start
                                       THEN t.period_base ELSE t.spend END,
                    period_start = p.start
                FROM unnest($1::text[], $2::text[], $3::timestamptz[])
                    AS p(entity, entity_id, start)
                WHERE t.entity = p.entity AND t.entity_id = p.entity_id
                  AND (t.period_start IS NULL OR t.period_start < p.start)
                RETURNING t.entity, t.entity_id, t.spend - t.period_base AS spend, t.period_start
            ), queued AS (
                INSERT INTO "{self.schema}".spend_announcements AS a
                    (entity, entity_id, spend, period_start)
                SELECT entity, entity_id, spend, period_start FROM reset
                ORDER BY entity, entity_id
                ON CONFLICT (entity, entity_id) DO UPDATE SET
                    spend = EXCLUDED.spend, period_start = EXCLUDED.period_start,
                    queued_at = now()
                RETURNING 1
            )
            SELECT * FROM reset
            """,
            [p[0] for p in periods],
            [p[1] for p in periods],
            [p[2] for p in periods],
        )
        return [
            TotalAfter(r["entity"], r["entity_id"], r["spend"], r["period_start"]) for r in rows
        ]

    @property
    def _rotation_lock(self) -> str:
        return f"{self.schema}.key_rotations"

    async def rotated_keys(self, conn: asyncpg.Connection, keys: Sequence[str]) -> dict[str, str]:
        """Which of `keys` have been rotated, each to the newest hash of its chain. Called in
        the batch's transaction after the claim, which took the rotation lock shared until
        the commit, so a rotation (`carry_over`, exclusive) waits for this batch's totals
        and then moves them, or has committed before this batch reads where keys went."""
        now = {k: k for k in keys}
        for _ in range(MAX_ROTATION_CHAIN):
            rows = await conn.fetch(
                f'SELECT old_hash, new_hash FROM "{self.schema}".key_rotations '
                "WHERE old_hash = ANY($1::text[])",
                list(set(now.values())),
            )
            if not rows:
                break
            step = {r["old_hash"]: r["new_hash"] for r in rows}
            now = {k: step.get(v, v) for k, v in now.items()}
        return {k: v for k, v in now.items() if k != v}

    async def carry_over(
        self, conn: asyncpg.Connection, rotations: Sequence[tuple[str, str]]
    ) -> list[TotalAfter]:
        """Move each rotated key's total `(old hash, new hash)` to its new hash, in order,
        and remember the rotation, so a call of the old key recorded later adds to the new
        hash (`rotated_keys`).

        The old row (lifetime spend, requests, tokens, period base and start) is deleted
        and added into the new hash's row (the newest of its chain, should the new hash
        have been rotated since), and the new total is queued in the outbox, all in the
        caller's transaction, under the rotation lock (exclusive: spend batches that read
        the rotations before it commit first). Moving drains the old row, so a redelivered
        rotation finds nothing to move and changes nothing. Returns the totals it changed.
        """
        rotations = [(old, new) for old, new in rotations if old != new]
        if not rotations:
            return []
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self._rotation_lock)
        moved: dict[tuple[str, str], TotalAfter] = {}
        for old, new in rotations:
            await conn.execute(
                f'INSERT INTO "{self.schema}".key_rotations (old_hash, new_hash) '
                "VALUES ($1, $2) ON CONFLICT (old_hash) DO NOTHING",
                old,
                new,
            )
            newest = (await self.rotated_keys(conn, [old])).get(old, new)
            rows = await conn.fetch(self._carry_sql, old, newest)
            for r in rows:
                moved.pop(("key", old), None)
                moved[(r["entity"], r["entity_id"])] = TotalAfter(
                    r["entity"], r["entity_id"], r["spend"], r["period_start"]
                )
        return list(moved.values())

    @property
    def _carry_sql(self) -> str:
        s = f'"{self.schema}"'
        return f"""
            WITH old AS (
                DELETE FROM {s}.spend_totals WHERE entity = 'key' AND entity_id = $1
                RETURNING *
            ), moved AS (
                INSERT INTO {s}.spend_totals AS t (entity, entity_id, spend, requests,
                    total_tokens, last_alias, updated_at, period_start, period_base, created_at)
                SELECT 'key', $2, spend, requests, total_tokens, last_alias, now(),
                    period_start, period_base, created_at
                FROM old
                ON CONFLICT (entity, entity_id) DO UPDATE SET
                    spend = t.spend + EXCLUDED.spend,
                    requests = t.requests + EXCLUDED.requests,
                    total_tokens = t.total_tokens + EXCLUDED.total_tokens,
                    last_alias = COALESCE(t.last_alias, EXCLUDED.last_alias),
                    period_base = t.period_base + EXCLUDED.period_base,
                    period_start = GREATEST(t.period_start, EXCLUDED.period_start),
                    created_at = LEAST(t.created_at, EXCLUDED.created_at),
                    updated_at = now()
                RETURNING entity, entity_id, spend - period_base AS spend, period_start
            ), unqueued AS (
                DELETE FROM {s}.spend_announcements
                WHERE entity = 'key' AND entity_id = $1 AND EXISTS (SELECT 1 FROM old)
                RETURNING 1
            ), queued AS (
                INSERT INTO {s}.spend_announcements AS a (entity, entity_id, spend, period_start)
                SELECT entity, entity_id, spend, period_start FROM moved
                ON CONFLICT (entity, entity_id) DO UPDATE SET
                    spend = EXCLUDED.spend, period_start = EXCLUDED.period_start,
                    queued_at = now()
                RETURNING 1
            )
            SELECT * FROM moved
        """

    async def queued_totals(
        self, conn: asyncpg.Connection, *, older_than_s: float = 0.0, limit: int = 1000
    ) -> list[TotalAfter]:
        """Totals committed and not yet announced (the outbox), oldest first."""
        rows = await conn.fetch(
            f"""
            SELECT entity, entity_id, spend, period_start FROM "{self.schema}".spend_announcements
            WHERE queued_at <= now() - make_interval(secs => $1)
            ORDER BY queued_at LIMIT $2
            """,
            older_than_s,
            limit,
        )
        return [
            TotalAfter(r["entity"], r["entity_id"], r["spend"], r["period_start"]) for r in rows
        ]

    async def forget_announced(self, conn: asyncpg.Connection, totals: Sequence[TotalAfter]) -> int:
        """Take announced totals out of the outbox; a newer total queued meanwhile stays."""
        if not totals:
            return 0
        done = sorted(totals, key=lambda t: (t.entity, t.entity_id))
        rows = await conn.fetch(
            f"""
            WITH done AS (
                SELECT a.entity, a.entity_id FROM "{self.schema}".spend_announcements a
                JOIN unnest($1::text[], $2::text[], $3::numeric[], $4::timestamptz[])
                    AS p(entity, entity_id, spend, period_start)
                  ON a.entity = p.entity AND a.entity_id = p.entity_id AND a.spend = p.spend
                 AND a.period_start IS NOT DISTINCT FROM p.period_start
                ORDER BY a.entity, a.entity_id
                FOR UPDATE OF a
            )
            DELETE FROM "{self.schema}".spend_announcements a USING done
            WHERE a.entity = done.entity AND a.entity_id = done.entity_id
            RETURNING 1
            """,
            [t.entity for t in done],
            [t.entity_id for t in done],
            [t.spend for t in done],
            [t.period_start for t in done],
        )
        return len(rows)

    async def existing_partitions(self, conn: asyncpg.Connection, table: str) -> list[str]:
        rows = await conn.fetch(
            """
            SELECT c.relname FROM pg_inherits i
            JOIN pg_class c ON c.oid = i.inhrelid
            JOIN pg_class p ON p.oid = i.inhparent
            JOIN pg_namespace n ON n.oid = p.relnamespace
            WHERE n.nspname = $1 AND p.relname = $2
            """,
            self.schema,
            table,
        )
        return [r["relname"] for r in rows]

    async def drop_partitions(self, conn: asyncpg.Connection, names: Iterable[str]) -> list[str]:
        """Drop whole partitions (retention): never a bulk DELETE."""
        dropped = []
        for name in names:
            # A writer holds this lock from creating-if-missing to commit: never drop a
            # partition between its check and its insert.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))", f"{self.schema}.{name}"
            )
            await conn.execute(f'DROP TABLE IF EXISTS "{self.schema}"."{name}"')
            dropped.append(name)
        self.forget_partitions()
        return dropped


async def write_events(
    pool: asyncpg.Pool,
    events: Sequence[LlmRequestFinished],
    policy: LedgerPolicy,
    *,
    schema: str = names.SCHEMA_LEDGER,
    batch_size: int = 500,
) -> int:
    """Write already-decoded events in batches, one transaction each, as the consumer does.

    Returns how many were new. For benchmarks, backfills and tests: no NATS involved.
    """
    projection = SpendProjection(schema)
    inserted = 0
    for i in range(0, len(events), batch_size):
        rows = [spend_row(e, policy) for e in events[i : i + batch_size]]
        async with pool.acquire() as conn, conn.transaction():
            inserted += (await projection.write(conn, rows)).inserted
    return inserted
