"""The spend consumer against real NATS and PostgreSQL: rows, totals, idempotency, poison."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from decimal import Decimal
from typing import Any

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
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from tollgate_ledger.budgets import SpendMirror
from tollgate_ledger.policy import LedgerPolicy
from tollgate_ledger.projections.spend import SpendProjection
from tollgate_ledger.service import js_publisher
from tollgate_ledger.subscribers import run_spend
from tollgate_shared import consuming, names
from tollgate_shared.events import LedgerSpendUpdated, LedgerTrackingFailed
from tollgate_shared.publishing import offload_content, publish_event
from tollgate_shared.state import SpendState, spend_kv_key


async def totals(pool: asyncpg.Pool, team: str) -> dict[tuple[str, str], Decimal]:
    rows = await pool.fetch(
        "SELECT entity, entity_id, spend FROM ledger.spend_totals WHERE entity_id LIKE $1 || '%'",
        team,
    )
    return {(r["entity"], r["entity_id"]): r["spend"] for r in rows}


async def snapshot(pool: asyncpg.Pool, team: str) -> dict[str, Any]:
    return {
        "logs": await pool.fetchval(
            "SELECT count(*) FROM ledger.spend_logs WHERE team_id = $1", team
        ),
        "totals": await totals(pool, team),
        "daily": [
            tuple(r)
            for r in await pool.fetch(
                "SELECT dimension, dimension_id, spend, requests, successes, failures "
                "FROM ledger.daily_spend WHERE dimension_id LIKE $1 || '%' OR dimension = 'model' "
                "ORDER BY 1, 2",
                team,
            )
        ],
        "session": tuple(
            await pool.fetchrow(
                "SELECT request_count, spend, total_tokens FROM ledger.sessions "
                "WHERE session_id = $1",
                f"{team}-sess",
            )
            or ()
        ),
    }


async def test_batch_lands_with_correct_rows_and_totals(
    js: JetStreamContext,
    nc: NATS,
    pool: asyncpg.Pool,
    team: str,
    spend_spec: names.ConsumerSpec,
) -> None:
    updates: list[LedgerSpendUpdated] = []

    async def on_update(msg: Msg) -> None:
        updates.append(LedgerSpendUpdated.model_validate_json(msg.data))

    sub = await nc.subscribe(names.LEDGER_SPEND_UPDATED, cb=on_update)
    events = [make_completed(team, n) for n in range(8)] + [make_failed(team, 8)]
    for ev in events:
        await publish_event(js, ev)
    c = spend_subscriber(spend_spec, js, pool, mirror=SpendMirror(js), publish=js_publisher(js))
    await run_until_idle(js, spend_spec, c.handle)

    snap = await snapshot(pool, team)
    assert snap["logs"] == 9
    expected_team = sum((e.spend for e in events), Decimal(0))
    assert snap["totals"][("team", team)] == expected_team
    key0 = sum((e.spend for e in events if e.api_key_hash == f"{team}-key-0"), Decimal(0))
    assert snap["totals"][("key", f"{team}-key-0")] == key0
    assert snap["totals"][("user", f"{team}-user")] == expected_team
    assert snap["session"] == (9, expected_team, 15 * 8)
    team_daily = [d for d in snap["daily"] if d[0] == "team"]
    assert team_daily == [("team", team, expected_team, 9, 8, 1)]

    row = await pool.fetchrow(
        "SELECT * FROM ledger.spend_logs WHERE request_id = $1", f"{team}-req-3"
    )
    assert row["spend"] == Decimal("0.004")
    assert row["api_key"] == f"{team}-key-1"
    assert row["key_alias"] == "alias-1"
    assert row["team_alias"] == f"{team}-alias"
    assert row["status"] == "success"
    assert orjson.loads(row["messages"]) == [{"role": "user", "content": "hello 3"}]
    failure = await pool.fetchrow(
        "SELECT * FROM ledger.spend_logs WHERE request_id = $1", f"{team}-req-8"
    )
    assert (failure["status"], failure["error_class"], failure["status_code"]) == (
        "failure",
        "APIError",
        500,
    )

    # Totals reach the spend bucket (for ingress) and the ledger stream (for alerts).
    kv = await js.key_value(names.KV_SPEND)
    entry = await kv.get(spend_kv_key("team", team))
    assert SpendState.model_validate_json(entry.value or b"").spend == expected_team
    for _ in range(50):
        if any(t.entity_id == team for u in updates for t in u.totals):
            break
        await asyncio.sleep(0.05)
    await sub.unsubscribe()
    team_totals = [
        t for u in updates for t in u.totals if t.entity == "team" and t.entity_id == team
    ]
    assert team_totals
    assert max(t.spend for t in team_totals) == expected_team


async def test_redelivered_events_are_not_counted_twice(
    js: JetStreamContext,
    pool: asyncpg.Pool,
    team: str,
    spend_spec: names.ConsumerSpec,
) -> None:
    events = [make_completed(team, n) for n in range(6)]
    for ev in events:
        await publish_event(js, ev)
    inner = spend_subscriber(spend_spec, js, pool)
    crashed: list[int] = []

    async def commit_then_lose_the_ack(msgs: list[Msg]) -> None:
        # The first batch is committed, then the process "dies" before acking:
        # JetStream redelivers it, and the second delivery must add nothing.
        if not crashed:
            crashed.append(len(msgs))
            await inner.handle([_NoAck(m) for m in msgs])  # type: ignore[misc]
            for m in msgs:
                await m.nak(delay=0.1)
            return
        await inner.handle(msgs)

    await run_until_idle(js, spend_spec, commit_then_lose_the_ack)
    assert crashed
    first = await snapshot(pool, team)
    assert first["logs"] == 6
    assert first["totals"][("team", team)] == sum((e.spend for e in events), Decimal(0))

    # The same events again, republished beyond the dedupe window (new Nats-Msg-Id).
    for ev in events:
        await publish_raw(js, ev.subject(), ev.to_json())
    await run_until_idle(js, spend_spec, inner.handle)
    assert await snapshot(pool, team) == first


@pytest.mark.parametrize("commits", [1, 3])
async def test_pipelined_run_lands_every_batch_once_and_a_stop_loses_nothing(
    js: JetStreamContext,
    pool: asyncpg.Pool,
    team: str,
    spend_spec: names.ConsumerSpec,
    commits: int,
) -> None:
    # Small batches, so many are decoded while the one before them commits; with several
    # commits at once, their transactions upsert the same session, key and team rows.
    events = [make_completed(team, n) for n in range(40)]
    for ev in events[:25]:
        await publish_event(js, ev)
    inner = spend_subscriber(spend_spec, js, pool)
    task = asyncio.create_task(run_spend(js, spend_spec, inner, batch_size=4, commits=commits))
    for _ in range(200):
        if await pool.fetchval("SELECT count(*) FROM ledger.spend_logs WHERE team_id = $1", team):
            break
        await asyncio.sleep(0.02)
    # Stopped mid-run: the commit in flight finishes, what was fetched or decoded is nak'ed.
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.3)
    for ev in events[25:]:
        await publish_event(js, ev)
    await run_until_idle(js, spend_spec, inner.handle)
    got = await snapshot(pool, team)
    assert got["logs"] == 40
    assert got["totals"][("team", team)] == sum((e.spend for e in events), Decimal(0))
    assert got["session"][0] == 40
    info = await js.consumer_info(spend_spec.stream, spend_spec.name)
    assert info.num_ack_pending == 0
    assert info.num_pending == 0


class _NoAck:
    """Wraps a message so the handler's ack goes nowhere (a crash before the ack)."""

    def __init__(self, msg: Msg) -> None:
        self._msg = msg
        self.subject = msg.subject
        self.data = msg.data
        self.metadata = msg.metadata

    async def ack(self) -> None:
        return None

    async def nak(self, delay: float | None = None) -> None:
        return None

    async def term(self) -> None:
        await self._msg.term()


async def test_poison_is_terminated_reported_and_good_events_still_land(
    js: JetStreamContext,
    nc: NATS,
    pool: asyncpg.Pool,
    team: str,
    spend_spec: names.ConsumerSpec,
) -> None:
    failures: list[LedgerTrackingFailed] = []

    async def on_failed(msg: Msg) -> None:
        failures.append(LedgerTrackingFailed.model_validate_json(msg.data))

    sub = await nc.subscribe(names.LEDGER_TRACKING_FAILED, cb=on_failed)
    subject = f"{names.LLM_REQUEST_COMPLETED}.{team}"
    terminated = consuming.MESSAGES_TERMINATED.labels(spend_spec.name)._value.get()
    await publish_raw(js, subject, b"{this is not json")
    await publish_raw(js, subject, orjson.dumps({"producer": "x", "request_id": f"{team}-bad"}))
    await publish_event(js, make_completed(team, 1))
    await run_until_idle(
        js, spend_spec, spend_subscriber(spend_spec, js, pool, publish=js_publisher(js)).handle
    )
    # A NUL-laden and an out-of-range row must not sink their batch either.
    await publish_event(js, make_completed(team, 2, end_user="nul\x00here"))
    await publish_event(js, make_completed(team, 3))
    await run_until_idle(js, spend_spec, spend_subscriber(spend_spec, js, pool).handle)

    assert consuming.MESSAGES_TERMINATED.labels(spend_spec.name)._value.get() == terminated + 2
    info = await js.consumer_info(spend_spec.stream, spend_spec.name)
    assert info.num_ack_pending == 0
    assert info.num_pending == 0
    assert info.num_redelivered == 0
    ids = {
        r["request_id"]
        for r in await pool.fetch(
            "SELECT request_id FROM ledger.spend_logs WHERE team_id = $1", team
        )
    }
    assert ids == {f"{team}-req-1", f"{team}-req-2", f"{team}-req-3"}
    for _ in range(50):
        if len([f for f in failures if f.subject_name == subject]) >= 2:
            break
        await asyncio.sleep(0.05)
    await sub.unsubscribe()
    mine = [f for f in failures if f.subject_name == subject]
    assert len(mine) == 2
    assert {f.request_id for f in mine} == {None, f"{team}-bad"}
    assert all(f.error for f in mine)


async def test_data_error_row_is_isolated(
    js: JetStreamContext,
    pool: asyncpg.Pool,
    team: str,
    spend_spec: names.ConsumerSpec,
) -> None:
    # request_duration_ms is an integer column: a latency beyond it is refused by the
    # database; only that message is terminated, the rest of the batch commits.
    await publish_event(js, make_completed(team, 1, total_latency_ms=1e12))
    await publish_event(js, make_completed(team, 2))
    await run_until_idle(js, spend_spec, spend_subscriber(spend_spec, js, pool).handle)
    ids = {
        r["request_id"]
        for r in await pool.fetch(
            "SELECT request_id FROM ledger.spend_logs WHERE team_id = $1", team
        )
    }
    assert ids == {f"{team}-req-2"}
    info = await js.consumer_info(spend_spec.stream, spend_spec.name)
    assert info.num_ack_pending == 0
    assert info.num_pending == 0


async def test_database_down_naks_and_reports_then_recovers(
    js: JetStreamContext,
    nc: NATS,
    pool: asyncpg.Pool,
    team: str,
    spend_spec: names.ConsumerSpec,
) -> None:
    errors: list[bytes] = []

    async def on_error(msg: Msg) -> None:
        errors.append(msg.data)

    sub = await nc.subscribe(names.LEDGER_DB_ERROR, cb=on_error)
    await publish_event(js, make_completed(team, 1))
    # A projection pointing at a schema that does not exist fails like a broken database.
    broken = spend_subscriber(
        spend_spec,
        js,
        pool,
        LedgerPolicy(),
        projection=SpendProjection(f"missing_{uuid.uuid4().hex}"),
        publish=js_publisher(js),
    )
    psub = await js.pull_subscribe_bind(durable=spend_spec.name, stream=spend_spec.stream)
    msgs = await psub.fetch(10, timeout=5)
    await broken.handle(msgs)
    for _ in range(50):
        if errors:
            break
        await asyncio.sleep(0.05)
    await sub.unsubscribe()
    assert errors
    assert b'"batch_size":1' in errors[0]
    # Nak'd with the consumer's backoff: it comes back and lands with a healthy writer.
    await run_until_idle(js, spend_spec, spend_subscriber(spend_spec, js, pool).handle)
    assert (
        await pool.fetchval("SELECT count(*) FROM ledger.spend_logs WHERE team_id = $1", team) == 1
    )


async def test_offloaded_content_is_hydrated_when_stored(
    js: JetStreamContext,
    pool: asyncpg.Pool,
    team: str,
    spend_spec: names.ConsumerSpec,
) -> None:
    big = make_completed(team, 1, messages=[{"role": "user", "content": "x" * 2000}])
    await publish_event(js, await offload_content(js, big))
    await run_until_idle(js, spend_spec, spend_subscriber(spend_spec, js, pool).handle)
    row = await pool.fetchrow(
        "SELECT messages FROM ledger.spend_logs WHERE request_id = $1", big.request_id
    )
    assert orjson.loads(row["messages"]) == big.messages
