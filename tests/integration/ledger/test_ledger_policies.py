"""Config switches, retention and rebuild against a real PostgreSQL (and NATS for rebuild)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import orjson
import pytest
from ledger_support import (
    make_completed,
    make_failed,
    publish_raw,
    run_until_idle,
    spend_subscriber,
)
from nats.js import JetStreamContext

from tollgate_devstack.embedded import StackUrls
from tollgate_ledger.app import MIGRATIONS
from tollgate_ledger.policy import LedgerPolicy
from tollgate_ledger.projections.spend import SpendProjection
from tollgate_ledger.rebuild import rebuild
from tollgate_ledger.rows import spend_row
from tollgate_ledger.service import maintain_partitions
from tollgate_shared import names
from tollgate_shared.events import LlmRequestFinished
from tollgate_shared.publishing import publish_event


async def write(pool: asyncpg.Pool, policy: LedgerPolicy, events: list[LlmRequestFinished]) -> None:
    projection = SpendProjection(names.SCHEMA_LEDGER)
    async with pool.acquire() as conn, conn.transaction():
        await projection.write(conn, [spend_row(e, policy) for e in events])


async def team_total(pool: asyncpg.Pool, team: str) -> Decimal | None:
    return await pool.fetchval(
        "SELECT spend FROM ledger.spend_totals WHERE entity = 'team' AND entity_id = $1", team
    )


@pytest.mark.parametrize("store", [True, False])
async def test_store_prompts_in_spend_logs(pool: asyncpg.Pool, team: str, store: bool) -> None:
    await write(pool, LedgerPolicy(store_prompts=store), [make_completed(team, 1)])
    row = await pool.fetchrow(
        "SELECT messages, response, proxy_server_request FROM ledger.spend_logs WHERE team_id = $1",
        team,
    )
    if store:
        assert orjson.loads(row["messages"]) == [{"role": "user", "content": "hello 1"}]
        assert orjson.loads(row["proxy_server_request"]) == {"body": {"model": "gpt-4o"}}
    else:
        assert (row["messages"], row["response"], row["proxy_server_request"]) == (None, None, None)


async def test_disable_spend_logs_still_counts(pool: asyncpg.Pool, team: str) -> None:
    events = [make_completed(team, 1), make_failed(team, 2, spend=Decimal("0.5"))]
    await write(pool, LedgerPolicy(disable_spend_logs=True), events)
    assert (
        await pool.fetchval("SELECT count(*) FROM ledger.spend_logs WHERE team_id = $1", team) == 0
    )
    assert await team_total(pool, team) == Decimal("0.502")
    # ... and idempotently: the same events again change nothing.
    await write(pool, LedgerPolicy(disable_spend_logs=True), events)
    assert await team_total(pool, team) == Decimal("0.502")


async def test_disable_error_logs_keeps_successes(pool: asyncpg.Pool, team: str) -> None:
    await write(
        pool, LedgerPolicy(disable_error_logs=True), [make_completed(team, 1), make_failed(team, 2)]
    )
    rows = await pool.fetch(
        "SELECT request_id, status FROM ledger.spend_logs WHERE team_id = $1", team
    )
    assert [(r["request_id"], r["status"]) for r in rows] == [(f"{team}-req-1", "success")]
    failures = await pool.fetchval(
        "SELECT failures FROM ledger.daily_spend WHERE dimension = 'team' AND dimension_id = $1",
        team,
    )
    assert failures == 1


async def test_retention_drops_whole_partitions(pool: asyncpg.Pool, team: str) -> None:
    now = datetime.now(UTC)
    old = make_completed(
        team, 1, start_time=now - timedelta(days=10), end_time=now - timedelta(days=10)
    )
    recent = make_completed(team, 2, start_time=now, end_time=now)
    await write(pool, LedgerPolicy(), [old, recent])
    old_part = f"spend_logs_p{(now - timedelta(days=10)):%Y%m%d}"
    projection = SpendProjection(names.SCHEMA_LEDGER)
    async with pool.acquire() as conn:
        assert old_part in await projection.existing_partitions(conn, "spend_logs")

    dropped = await maintain_partitions(
        pool, projection, LedgerPolicy(retention=timedelta(days=7)), now
    )
    assert old_part in dropped
    assert f"processed_requests_p{(now - timedelta(days=10)):%Y%m%d}" in dropped
    ids = [
        r["request_id"]
        for r in await pool.fetch(
            "SELECT request_id FROM ledger.spend_logs WHERE team_id = $1", team
        )
    ]
    assert ids == [recent.request_id]
    # Totals are lifetime figures: retention of logs does not change them.
    assert await team_total(pool, team) == old.spend + recent.spend
    async with pool.acquire() as conn:
        parts = await projection.existing_partitions(conn, "spend_logs")
    assert f"spend_logs_p{(now + timedelta(days=1)):%Y%m%d}" in parts


async def test_rebuild_gives_equal_totals(
    js: JetStreamContext,
    pool: asyncpg.Pool,
    team: str,
    spend_spec: names.ConsumerSpec,
    ledger_db: str,
    provisioned: StackUrls,
) -> None:
    events = [make_completed(team, n) for n in range(5)] + [make_failed(team, 5)]
    for ev in events:
        await publish_event(js, ev)
    await publish_raw(js, f"{names.LLM_REQUEST_COMPLETED}.{team}", b"not json")
    await publish_raw(js, events[0].subject(), events[0].to_json())  # a duplicate
    policy = LedgerPolicy(store_prompts=True)
    live = spend_subscriber(spend_spec, js, pool, policy)
    await run_until_idle(js, spend_spec, live.handle)

    async with pool.acquire() as conn:
        report = await rebuild(js, conn, policy, MIGRATIONS, team=team)
        assert report.ok, report.lines()
        assert report.events == 7
        assert report.skipped == 1
        assert report.rebuilt[("team", team)] == sum((e.spend for e in events), Decimal(0))
        assert report.rebuilt == report.live
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM pg_namespace WHERE nspname = $1", report.scratch_schema
            )
            == 0
        )

        # A live total that drifted is caught.
        await conn.execute(
            "UPDATE ledger.spend_totals SET spend = spend + 1 "
            "WHERE entity = 'team' AND entity_id = $1",
            team,
        )
        drifted = await rebuild(js, conn, policy, MIGRATIONS, team=team)
    assert not drifted.ok
    assert [(m[0], m[1]) for m in drifted.mismatches] == [("team", team)]

    # The command a person runs: prints both sides, exits non-zero on mismatch.
    env = {**os.environ, **provisioned.env(), "TOLLGATE_DATABASE_URL": ledger_db}
    env.pop("TOLLGATE_CONFIG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "tollgate_ledger", "rebuild", "--team", team],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert f"MISMATCH team {team}" in proc.stdout
    assert "spend totals rebuilt" in proc.stdout
