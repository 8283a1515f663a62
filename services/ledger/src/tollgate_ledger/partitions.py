"""Keeps the daily partitions ahead of time and drops the ones past retention."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import asyncpg

from tollgate_ledger import metrics
from tollgate_ledger.handlers import LedgerPolicy, partitions_to_drop
from tollgate_ledger.projections.spend import PARTITIONED_TABLES, SpendProjection

log = logging.getLogger(__name__)


async def maintain(
    pool: asyncpg.Pool,
    projection: SpendProjection,
    policy: LedgerPolicy,
    now: datetime | None = None,
) -> list[str]:
    """Create today's and tomorrow's partitions; drop whole days past retention."""
    now = now or datetime.now(UTC)
    today = now.date()
    async with pool.acquire() as conn, conn.transaction():
        await projection.ensure_partitions(conn, [today, today + timedelta(days=1)])
    if policy.retention is None:
        return []
    dropped: list[str] = []
    async with pool.acquire() as conn, conn.transaction():
        for table in PARTITIONED_TABLES:
            names = await projection.existing_partitions(conn, table)
            old = partitions_to_drop(names, now, policy.retention)
            dropped += await projection.drop_partitions(conn, old)
    if dropped:
        metrics.PARTITIONS_DROPPED.inc(len(dropped))
        log.info("retention %s: dropped partitions %s", policy.retention, ", ".join(dropped))
    return dropped


async def run_forever(
    pool: asyncpg.Pool, projection: SpendProjection, policy: LedgerPolicy
) -> None:
    # Partitions must exist before midnight; retention runs at its own interval.
    every = min(policy.retention_interval, timedelta(hours=1)).total_seconds()
    while True:
        try:
            await maintain(pool, projection, policy)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("partition maintenance failed: %s", exc)
        await asyncio.sleep(max(every, 1.0))
