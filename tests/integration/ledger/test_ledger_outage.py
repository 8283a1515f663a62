"""A PostgreSQL outage longer than max_deliver x backoff, and the messages JetStream gives up on.

The database is made unavailable for real: `ALLOW_CONNECTIONS false` on the test's
database (which binds superusers too) and every backend of it terminated, then allowed
again. With the consumer's old policy (nak with backoff) the outage spent every delivery
and the spend was lost; the breaker holds the messages and nothing is lost or doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal
from urllib.parse import urlsplit

import asyncpg
import pytest
from ledger_support import make_completed, provisioned_consumer, spend_subscriber
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from tollgate_devstack.embedded import StackUrls
from tollgate_ledger.policy import LedgerPolicy
from tollgate_ledger.projections.audit import AuditProjection
from tollgate_ledger.projections.dead_letters import DeadLetterProjection
from tollgate_ledger.projections.spend import SpendProjection
from tollgate_ledger.service import AuditService, DeadLetters, database_probe, js_publisher
from tollgate_ledger.subscribers import DeadLetterSubscriber, run, run_spend
from tollgate_shared import consuming, names
from tollgate_shared.events import LedgerTrackingFailed
from tollgate_shared.publishing import publish_event

N = 30


def _db_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


@contextlib.asynccontextmanager
async def database_down(server_url: str, database_url: str) -> AsyncIterator[None]:
    """No connection to the test's database is possible inside the block."""
    name = _db_name(database_url)
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        yield
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()


@pytest.fixture
async def short_spec(js: JetStreamContext, team: str) -> AsyncIterator[names.ConsumerSpec]:
    """`ledger-spend` for this team with deliveries that run out in about two seconds."""
    spec = replace(
        names.LEDGER_SPEND,
        name=f"ledger-spend-short-{team}",
        filter_subjects=(f"{names.LLM_REQUEST_COMPLETED}.{team}",),
        max_deliver=3,
        backoff_s=(0.2, 0.5),
        ack_wait_s=1.5,
    )
    async with provisioned_consumer(js, spec):
        yield spec


@pytest.fixture
async def dead_spec(
    js: JetStreamContext, short_spec: names.ConsumerSpec
) -> AsyncIterator[names.ConsumerSpec]:
    """`ledger-dead-letters` for the short consumer's advisories, on the stream that keeps them."""
    spec = replace(
        names.LEDGER_DEAD_LETTERS,
        name=f"dead-{short_spec.name}",
        filter_subjects=(names.max_deliveries_advisory(short_spec),),
    )
    async with provisioned_consumer(js, spec):
        yield spec


@contextlib.asynccontextmanager
async def recording_dead_letters(
    js: JetStreamContext, spec: names.ConsumerSpec, dead: DeadLetters
) -> AsyncIterator[None]:
    task = asyncio.create_task(run(js, spec, DeadLetterSubscriber(spec, dead).handle, 50))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _team_spend(pool: asyncpg.Pool, team: str) -> tuple[int, Decimal | None]:
    logs = await pool.fetchval("SELECT count(*) FROM ledger.spend_logs WHERE team_id = $1", team)
    spend = await pool.fetchval(
        "SELECT spend FROM ledger.spend_totals WHERE entity = 'team' AND entity_id = $1", team
    )
    return logs, spend


async def test_postgres_outage_pauses_consumption_and_loses_nothing(
    js: JetStreamContext,
    nc: NATS,
    pool: asyncpg.Pool,
    ledger_db: str,
    provisioned: StackUrls,
    team: str,
    short_spec: names.ConsumerSpec,
) -> None:
    events = [make_completed(team, n) for n in range(N)]
    advisories: list[bytes] = []

    async def on_advisory(msg: Msg) -> None:
        advisories.append(msg.data)

    sub = await nc.subscribe(
        f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{short_spec.stream}.{short_spec.name}",
        cb=on_advisory,
    )
    breaker = consuming.CircuitBreaker("test-postgres", database_probe(pool), probe_every_s=(0.3,))
    subscriber = replace(
        spend_subscriber(short_spec, js, pool, LedgerPolicy(), publish=js_publisher(js)),
        breaker=breaker,
    )
    task = asyncio.create_task(run_spend(js, short_spec, subscriber, 10))
    try:
        async with database_down(provisioned.database_url, ledger_db):
            for ev in events:
                await publish_event(js, ev)
            # Longer than max_deliver x backoff plus ack_wait, several times over.
            await asyncio.sleep(6)
            assert breaker.is_open
            info = await js.consumer_info(short_spec.stream, short_spec.name)
            # Held, not spent: nothing was redelivered past its first delivery.
            assert info.num_redelivered == 0, info
        deadline = asyncio.get_running_loop().time() + 30
        while (await _team_spend(pool, team))[0] < N:
            assert asyncio.get_running_loop().time() < deadline, await _team_spend(pool, team)
            await asyncio.sleep(0.2)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await breaker.stop()
        await sub.unsubscribe()
    logs, spend = await _team_spend(pool, team)
    assert logs == N
    assert spend == sum((e.spend for e in events), Decimal(0))
    assert not breaker.is_open
    assert advisories == []
    info = await js.consumer_info(short_spec.stream, short_spec.name)
    assert (info.num_pending, info.num_ack_pending) == (0, 0)


@pytest.mark.parametrize("ledger_running", [True, False], ids=["watching", "no-ledger"])
async def test_max_delivery_is_recorded_alerted_and_replayed(
    js: JetStreamContext,
    nc: NATS,
    pool: asyncpg.Pool,
    team: str,
    short_spec: names.ConsumerSpec,
    dead_spec: names.ConsumerSpec,
    ledger_running: bool,
) -> None:
    """no-ledger: the advisories are raised while nothing records dead letters (JetStream's
    advisories are plain messages); the stream keeps them until a ledger starts."""
    failed: list[LedgerTrackingFailed] = []

    async def on_failed(msg: Msg) -> None:
        failed.append(LedgerTrackingFailed.model_validate_json(msg.data))

    fail_sub = await nc.subscribe(names.LEDGER_TRACKING_FAILED, cb=on_failed)
    dead = DeadLetters(pool, js, DeadLetterProjection(names.SCHEMA_LEDGER), js_publisher(js))
    recording = recording_dead_letters(js, dead_spec, dead)
    if ledger_running:
        await recording.__aenter__()
    events = [make_completed(team, n) for n in range(3)]
    for ev in events:
        await publish_event(js, ev)
    # A writer whose every batch fails while the database answers (a schema it cannot
    # write): the breaker's probe says "up", so the batch is nak'ed until JetStream
    # stops delivering it.
    breaker = consuming.CircuitBreaker("test-postgres", database_probe(pool))
    broken = replace(
        spend_subscriber(
            short_spec,
            js,
            pool,
            LedgerPolicy(),
            projection=SpendProjection("missing_schema"),
            announce=False,
        ),
        breaker=breaker,
    )
    task = asyncio.create_task(run_spend(js, short_spec, broken, 10))
    try:
        if not ledger_running:
            # JetStream gives up on all three while nothing records dead letters...
            deadline = asyncio.get_running_loop().time() + 20
            while (await js.stream_info(dead_spec.stream)).state.messages < 1 or (
                await js.consumer_info(dead_spec.stream, dead_spec.name)
            ).num_pending < len(events):
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.2)
            assert await pool.fetchval("SELECT count(*) FROM ledger.dead_letters") == 0
            # ...and a ledger started afterwards records them from the stream.
            await recording.__aenter__()
        deadline = asyncio.get_running_loop().time() + 20
        while await pool.fetchval("SELECT count(*) FROM ledger.dead_letters") < len(events):
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.2)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await recording.__aexit__(None, None, None)
    # Recorded once each, and acked: nothing left in the stream's consumer.
    info = await js.consumer_info(dead_spec.stream, dead_spec.name)
    assert (info.num_pending, info.num_ack_pending) == (0, 0)
    assert not breaker.is_open
    rows = await pool.fetch(
        "SELECT consumer, deliveries, subject, request_id, replayed_at FROM ledger.dead_letters"
    )
    assert {r["request_id"] for r in rows} == {e.request_id for e in events}
    assert {(r["consumer"], r["deliveries"], r["replayed_at"]) for r in rows} == {
        (short_spec.name, 3, None)
    }
    for _ in range(50):
        if len([f for f in failed if f.request_id and f.request_id.startswith(team)]) >= 3:
            break
        await asyncio.sleep(0.05)
    await fail_sub.unsubscribe()
    mine = [f for f in failed if f.request_id and f.request_id.startswith(team)]
    assert len(mine) == 3
    assert all("replay-dead" in f.error for f in mine)
    assert (await _team_spend(pool, team))[0] == 0

    # replay-dead: re-read by sequence and written once; a second replay changes nothing.
    healthy = spend_subscriber(short_spec, js, pool, LedgerPolicy(), announce=False).service
    audit = AuditService(
        names.LEDGER_AUDIT.name, pool, AuditProjection(names.SCHEMA_LEDGER), LedgerPolicy()
    )
    report = await dead.replay(healthy, audit)
    assert (report.recorded, report.refused, report.gone, report.retry) == (3, 0, 0, 0)
    assert await _team_spend(pool, team) == (3, sum((e.spend for e in events), Decimal(0)))
    again = await dead.replay(healthy, audit)
    assert again.recorded == 0
    assert await _team_spend(pool, team) == (3, sum((e.spend for e in events), Decimal(0)))
    outcomes = await pool.fetch("SELECT outcome FROM ledger.dead_letters")
    assert {r["outcome"] for r in outcomes} == {"recorded"}
