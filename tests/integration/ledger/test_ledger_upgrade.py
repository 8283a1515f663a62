"""Upgrades: a ledger schema left by every earlier release migrates to the current one, and
its old rows read back through the read queries and keep counting exactly once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest
from ledger_support import make_completed

from tollgate_ledger.app import MIGRATIONS
from tollgate_ledger.filters import AuditFilter, SpendLogFilter
from tollgate_ledger.policy import LedgerPolicy
from tollgate_ledger.projections.reads import LedgerReader
from tollgate_ledger.projections.spend import SpendProjection
from tollgate_ledger.rows import spend_row
from tollgate_shared.migrate import apply_migrations, discover

VERSIONS = [m.version for m in discover(MIGRATIONS)]
START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


async def old_rows(conn: asyncpg.Connection, schema: str) -> None:
    """What a ledger of release 0001 wrote, column for column (no later column named)."""
    s = f'"{schema}"'
    await SpendProjection(schema).ensure_partitions(conn, [START.date()])
    await conn.execute(
        f"INSERT INTO {s}.spend_logs (request_id, call_type, api_key, spend, total_tokens,"
        ' "startTime", "endTime", model, team_id, session_id, status, event_id)'
        " VALUES ('old-1', 'acompletion', 'old-key', 0.25, 30, $1, $1, 'gpt-4o', 'old-team',"
        " 'old-sess', 'success', 'evt-old-1')",
        START,
    )
    await conn.execute(
        f'INSERT INTO {s}.processed_requests (request_id, "startTime", event_id)'
        " VALUES ('old-1', $1, 'evt-old-1')",
        START,
    )
    await conn.execute(
        f"INSERT INTO {s}.sessions (session_id, first_seen, last_seen, request_count,"
        " success_count, spend, total_tokens) VALUES ('old-sess', $1, $1, 1, 1, 0.25, 30)",
        START,
    )
    await conn.execute(
        f"INSERT INTO {s}.spend_totals (entity, entity_id, spend, requests, total_tokens)"
        " VALUES ('team', 'old-team', 0.25, 1, 30), ('key', 'old-key', 0.25, 1, 30)"
    )
    await conn.execute(
        f"INSERT INTO {s}.audit_log (id, updated_at, changed_by, action, table_name, object_id,"
        " updated_values) VALUES ('audit-old-1', $1, 'admin', 'created',"
        " 'LiteLLM_TeamTable', 'old-team', '{\"team_alias\": \"old\"}')",
        START,
    )


@pytest.mark.parametrize("released", VERSIONS[:-1], ids=lambda v: f"from-{v:04d}")
async def test_every_released_schema_migrates_and_reads_back(
    pool: asyncpg.Pool, released: int
) -> None:
    schema = f"upgrade_{released:04d}"
    async with pool.acquire() as conn:
        assert await apply_migrations(conn, schema, MIGRATIONS, upto=released) == [
            v for v in VERSIONS if v <= released
        ]
        await old_rows(conn, schema)
        assert await apply_migrations(conn, schema, MIGRATIONS) == [
            v for v in VERSIONS if v > released
        ]

        reader = LedgerReader(schema)
        logs, total = await reader.spend_logs(
            conn, SpendLogFilter(team_id="old-team"), limit=10, offset=0
        )
        assert total == 1
        assert (logs[0]["request_id"], logs[0]["spend"]) == ("old-1", Decimal("0.25"))
        totals, _ = await reader.totals(conn, "team", "old-team", limit=10, offset=0)
        assert totals[0]["spend"] == Decimal("0.25")
        session = await reader.session(conn, "old-sess")
        assert session is not None
        assert session["spend"] == Decimal("0.25")
        audit, n = await reader.audit_logs(
            conn, AuditFilter(object_id="old-team"), limit=5, offset=0
        )
        assert n == 1
        assert audit[0]["updated_values"] == {"team_alias": "old"}

        # The migrated schema keeps counting: the old call redelivered is recognised,
        # a new call on the same team adds to the old total.
        projection = SpendProjection(schema)
        redelivered = make_completed(
            "old",
            1,
            request_id="old-1",
            team_id="old-team",
            api_key_hash="old-key",
            start_time=START,
            end_time=START,
            spend=Decimal("0.25"),
        )
        new = make_completed(
            "old",
            2,
            request_id="new-1",
            team_id="old-team",
            api_key_hash="old-key",
            start_time=datetime.now(UTC) - timedelta(minutes=1),
            spend=Decimal("0.5"),
        )
        async with conn.transaction():
            result = await projection.write(
                conn, [spend_row(e, LedgerPolicy()) for e in (redelivered, new)]
            )
        assert result.inserted == 1
        totals, _ = await reader.totals(conn, "team", "old-team", limit=10, offset=0)
        assert totals[0]["spend"] == Decimal("0.75")
