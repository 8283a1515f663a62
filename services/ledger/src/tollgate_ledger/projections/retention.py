"""Retention's statements: the cleanup lock, its run record, and the row-wise prunes.

Spend-log partitions are dropped by `SpendProjection.drop_partitions`; the tables that
are not partitioned (sessions, daily aggregates, audit log) are pruned here in bounded
batches so no statement holds its locks for long.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import asyncpg
import orjson

# (table, the column compared with the cutoff): what each row-wise prune looks at.
PRUNED: dict[str, str] = {
    "sessions": "last_seen",
    "daily_spend": "day",
    "audit_log": "updated_at",
}
_KEYS = {
    "sessions": "session_id",
    "daily_spend": "day, dimension, dimension_id",
    "audit_log": "id",
}


class RetentionProjection:
    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.lock_name = f"tollgate-retention:{schema}"

    async def try_lock(self, conn: asyncpg.Connection) -> bool:
        """Take the cleanup lock for this session; False when another ledger holds it."""
        return bool(
            await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", self.lock_name)
        )

    async def unlock(self, conn: asyncpg.Connection) -> None:
        await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", self.lock_name)

    async def last_run(self, conn: asyncpg.Connection, job: str) -> datetime | None:
        value: datetime | None = await conn.fetchval(
            f'SELECT max(ran_at) FROM "{self.schema}".retention_runs WHERE job = $1', job
        )
        return value

    async def record_run(
        self, conn: asyncpg.Connection, job: str, runner: str, at: datetime, dropped: dict[str, Any]
    ) -> None:
        await conn.execute(
            f"""INSERT INTO "{self.schema}".retention_runs (job, ran_at, runner, dropped)
            VALUES ($1, $2, $3, $4::jsonb)""",
            job,
            at,
            runner,
            orjson.dumps(dropped).decode(),
        )

    async def count_rows(self, conn: asyncpg.Connection, partition: str) -> int:
        count: int = await conn.fetchval(f'SELECT count(*) FROM "{self.schema}"."{partition}"')
        return count

    async def prune(
        self, conn: asyncpg.Connection, table: str, cutoff: datetime | date, batch: int = 10_000
    ) -> int:
        """Delete the rows of `table` older than `cutoff`, `batch` at a time; how many."""
        column, keys = PRUNED[table], _KEYS[table]
        deleted = 0
        while True:
            n: int = await conn.fetchval(
                f"""
                WITH old AS (
                    SELECT {keys} FROM "{self.schema}"."{table}" WHERE "{column}" < $1 LIMIT $2
                ), gone AS (
                    DELETE FROM "{self.schema}"."{table}" t USING old
                    WHERE ({", ".join(f"t.{k.strip()}" for k in keys.split(","))})
                        = ({", ".join(f"old.{k.strip()}" for k in keys.split(","))})
                    RETURNING 1
                )
                SELECT count(*) FROM gone
                """,
                cutoff,
                batch,
            )
            deleted += n
            if n < batch:
                return deleted
