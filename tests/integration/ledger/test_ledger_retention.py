"""Retention as seed 001 describes it, on a real PostgreSQL: any interval, one replica per
cleanup (an advisory lock), each table by its own setting, and the idempotency record
kept long enough that a replay after retention never counts a call twice."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import orjson
import pytest
from ledger_support import make_completed
from litestar.testing import AsyncTestClient
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError
from prometheus_client import REGISTRY

from tollgate_devstack.embedded import StackUrls
from tollgate_ledger.app import create_app
from tollgate_ledger.policy import LedgerPolicy
from tollgate_ledger.projections.retention import RetentionProjection
from tollgate_ledger.projections.spend import SpendProjection
from tollgate_ledger.rows import spend_row
from tollgate_ledger.service import Retention
from tollgate_ledger.settings import LedgerSettings
from tollgate_shared import names
from tollgate_shared.config import parse_config
from tollgate_shared.events import LlmRequestFinished

SCHEMA = names.SCHEMA_LEDGER
NOW = datetime.now(UTC).replace(microsecond=0)


async def write(pool: asyncpg.Pool, events: list[LlmRequestFinished]) -> int:
    """Write events as the consumer does; how many were new (not already counted)."""
    async with pool.acquire() as conn, conn.transaction():
        result = await SpendProjection(SCHEMA).write(
            conn, [spend_row(e, LedgerPolicy()) for e in events]
        )
    return result.inserted


def aged(team: str, n: int, days: float) -> LlmRequestFinished:
    at = NOW - timedelta(days=days)
    return make_completed(team, n, start_time=at, end_time=at, session_id=f"{team}-s{n}")


async def add_audit(pool: asyncpg.Pool, days: float) -> str:
    audit_id = uuid.uuid4().hex
    await pool.execute(
        "INSERT INTO ledger.audit_log (id, updated_at, action, table_name, object_id) "
        "VALUES ($1, $2, 'created', 'LiteLLM_VerificationToken', 'k')",
        audit_id,
        NOW - timedelta(days=days),
    )
    return audit_id


def retention(pool: asyncpg.Pool, policy: LedgerPolicy, runner: str = "r1") -> Retention:
    return Retention(pool, SpendProjection(SCHEMA), RetentionProjection(SCHEMA), policy, runner)


async def partitions(pool: asyncpg.Pool, table: str) -> set[str]:
    async with pool.acquire() as conn:
        return set(await SpendProjection(SCHEMA).existing_partitions(conn, table))


def dropped_metric(table: str) -> float:
    return (
        REGISTRY.get_sample_value("tollgate_ledger_retention_dropped_total", {"table": table})
        or 0.0
    )


async def test_replay_after_retention_never_double_counts(pool: asyncpg.Pool, team: str) -> None:
    # Spend logs kept 1 day; a call 3 days old is still inside the LLM stream's age (7 d),
    # so it may be redelivered or replayed (rebuild, replay-dead, a spool replayed late).
    old = aged(team, 1, days=3)
    assert await write(pool, [old]) == 1
    day = f"{old.start_time:%Y%m%d}"
    report = await retention(pool, LedgerPolicy(retention=timedelta(days=1))).run(NOW)
    assert report is not None
    assert f"spend_logs_p{day}" in report.partitions
    assert f"processed_requests_p{day}" not in report.partitions
    assert f"processed_requests_p{day}" in await partitions(pool, "processed_requests")
    # The same call again: recognised, not counted twice.
    assert await write(pool, [old]) == 0
    total = await pool.fetchval(
        "SELECT spend FROM ledger.spend_totals WHERE entity = 'team' AND entity_id = $1", team
    )
    assert total == old.spend
    # Past the window (stream age + margin) the idempotency record goes too.
    later = NOW + LedgerPolicy().idempotency_window
    report = await retention(pool, LedgerPolicy(retention=timedelta(days=1))).run(later)
    assert report is not None
    assert f"processed_requests_p{day}" in report.partitions


async def test_interval_over_an_hour_is_honoured(pool: asyncpg.Pool, team: str) -> None:
    policy = LedgerPolicy(retention=timedelta(days=1), retention_interval=timedelta(days=2))
    await write(pool, [aged(team, 1, days=4)])
    first = await retention(pool, policy).run(NOW)
    assert first is not None
    # An hour later, and a day later: not due (it used to run hourly whatever was asked).
    assert await retention(pool, policy, "r2").run(NOW + timedelta(hours=1)) is None
    assert await retention(pool, policy, "r2").run(NOW + timedelta(days=1)) is None
    assert await retention(pool, policy, "r2").run(NOW + timedelta(days=2)) is not None
    runs = await pool.fetch("SELECT runner, ran_at FROM ledger.retention_runs ORDER BY ran_at")
    assert [(r["runner"], r["ran_at"]) for r in runs] == [
        ("r1", NOW),
        ("r2", NOW + timedelta(days=2)),
    ]


async def test_cleanup_skips_while_another_replica_holds_the_lock(
    pool: asyncpg.Pool, team: str
) -> None:
    await write(pool, [aged(team, 1, days=12)])
    policy = LedgerPolicy(retention=timedelta(days=1))
    async with pool.acquire() as other:
        assert await RetentionProjection(SCHEMA).try_lock(other)
        try:
            assert await retention(pool, policy).run(NOW) is None
        finally:
            await RetentionProjection(SCHEMA).unlock(other)
    assert await retention(pool, policy).run(NOW) is not None


async def test_each_table_by_its_own_setting(
    pool: asyncpg.Pool, team: str, caplog: pytest.LogCaptureFixture
) -> None:
    await write(pool, [aged(team, 1, days=40), aged(team, 2, days=15), aged(team, 3, days=0)])
    audit = [await add_audit(pool, d) for d in (400, 100, 1)]
    before = {t: dropped_metric(t) for t in ("spend_logs", "sessions", "daily_spend", "audit_log")}
    cfg = parse_config(
        {
            "general_settings": {
                "maximum_spend_logs_retention_period": "10d",
                "maximum_session_logs_retention_period": "30d",
                "maximum_daily_spend_retention_period": "20d",
                "maximum_audit_logs_retention_period": "1y",
            }
        }
    )
    with caplog.at_level(logging.INFO, logger="tollgate_ledger.service"):
        report = await retention(pool, LedgerPolicy.from_config(cfg)).run(NOW)
    assert report is not None
    assert report.rows["spend_logs"] == 2
    assert report.rows["sessions"] == 1  # only the 40-day-old session
    assert report.rows["audit_log"] == 1  # only the 400-day-old entry
    sessions = {r["session_id"] for r in await pool.fetch("SELECT session_id FROM ledger.sessions")}
    assert sessions == {f"{team}-s2", f"{team}-s3"}
    days = {r["day"] for r in await pool.fetch("SELECT DISTINCT day FROM ledger.daily_spend")}
    assert days == {(NOW - timedelta(days=15)).date(), NOW.date()}
    kept = {r["id"] for r in await pool.fetch("SELECT id FROM ledger.audit_log")}
    assert kept == set(audit[1:])
    for table, was in before.items():
        assert dropped_metric(table) - was == report.rows[table]
    assert any("retention by r1: dropped partitions" in r.message for r in caplog.records)
    recorded = orjson.loads(await pool.fetchval("SELECT dropped FROM ledger.retention_runs"))
    assert recorded == report.summary()


def test_defaults_keep_the_audit_log_longest() -> None:
    policy = LedgerPolicy.from_config(
        parse_config({"general_settings": {"maximum_spend_logs_retention_period": "30d"}})
    )
    assert policy.session_retention == timedelta(days=30)  # sessions follow their logs
    assert policy.daily_retention is None
    assert policy.audit_retention is None  # only its own setting prunes it


@pytest.fixture
async def audit_spec(js: JetStreamContext) -> AsyncIterator[names.ConsumerSpec]:
    spec = names.ConsumerSpec(
        f"ledger-audit-t-{uuid.uuid4().hex[:8]}", names.STREAM_ADMIN.name, ("admin.>",)
    )
    await js.add_consumer(
        spec.stream,
        api.ConsumerConfig(
            durable_name=spec.name,
            deliver_policy=api.DeliverPolicy.NEW,
            ack_policy=api.AckPolicy.EXPLICIT,
            filter_subjects=list(spec.filter_subjects),
        ),
    )
    try:
        yield spec
    finally:
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(spec.stream, spec.name)


async def test_two_ledgers_one_cleanup(
    pool: asyncpg.Pool,
    team: str,
    ledger_db: str,
    provisioned: StackUrls,
    spend_spec: names.ConsumerSpec,
    audit_spec: names.ConsumerSpec,
) -> None:
    await write(pool, [aged(team, n, days=10 + n) for n in range(3)])
    expired = {
        f"{t}_p{(NOW - timedelta(days=10 + n)):%Y%m%d}"
        for n in range(3)
        for t in ("spend_logs", "processed_requests")
    }
    cfg = parse_config(
        {
            "general_settings": {
                "maximum_spend_logs_retention_period": "1d",
                "maximum_spend_logs_retention_interval": "1h",
            }
        }
    )
    settings = LedgerSettings(
        nats_url=provisioned.nats_url, database_url=ledger_db, master_key=None, config=None
    )
    apps = [
        create_app(
            settings, cfg, spend_spec=spend_spec, audit_spec=audit_spec, dead_letter_spec=None
        )
        for _ in range(2)
    ]
    async with AsyncTestClient(app=apps[0]), AsyncTestClient(app=apps[1]):
        for _ in range(100):
            if await pool.fetchval("SELECT count(*) FROM ledger.retention_runs"):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)  # both replicas have checked at least once more
    runs = await pool.fetch("SELECT runner, dropped FROM ledger.retention_runs")
    assert len(runs) == 1, runs  # one cleanup for the interval, by one of the two
    dropped = orjson.loads(runs[0]["dropped"])["partitions"]
    assert len(dropped) == len(set(dropped))
    assert expired <= set(dropped)
    assert not expired & (
        await partitions(pool, "spend_logs") | await partitions(pool, "processed_requests")
    )
    spend = await pool.fetchval(
        "SELECT spend FROM ledger.spend_totals WHERE entity = 'team' AND entity_id = $1", team
    )
    assert spend == sum((Decimal("0.001") * (n + 1) for n in range(3)), Decimal(0))
