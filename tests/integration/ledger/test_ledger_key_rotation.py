"""A rotated key keeps its spend: the audit consumer moves the old hash's total (and its
budget period) to the new hash in the batch's transaction, audit logging on or off, and
announces it; a redelivered rotation changes nothing. A call made with the old key and
recorded after the rotation adds to the newest hash (through a chain of rotations too),
and a rotation waits for a spend batch that read the rotations before it, then moves what
that batch wrote: no spend is stranded on an old hash."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest
from ledger_support import make_completed, publish_raw, run_until_idle
from nats.js import JetStreamContext, api
from nats.js.errors import KeyNotFoundError, NotFoundError

from support.builders import admin_change
from tollgate_ledger.budgets import SpendMirror
from tollgate_ledger.policy import LedgerPolicy
from tollgate_ledger.projections.audit import AuditProjection
from tollgate_ledger.projections.spend import SpendProjection, write_events
from tollgate_ledger.rows import spend_row
from tollgate_ledger.service import Announcer, AuditService
from tollgate_ledger.subscribers import AuditSubscriber
from tollgate_shared import names
from tollgate_shared.events import AdminChanged
from tollgate_shared.names import AdminSubject
from tollgate_shared.publishing import publish_event
from tollgate_shared.state import SpendState, spend_kv_key


@pytest.fixture
async def audit_spec(js: JetStreamContext) -> AsyncIterator[names.ConsumerSpec]:
    spec = names.ConsumerSpec(
        f"ledger-audit-rot-{uuid.uuid4().hex[:8]}",
        names.STREAM_ADMIN.name,
        ("admin.>",),
        backoff_s=(0.2,),
    )
    await js.add_consumer(
        spec.stream,
        api.ConsumerConfig(
            durable_name=spec.name,
            deliver_policy=api.DeliverPolicy.NEW,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=30,
            max_deliver=spec.max_deliver,
            filter_subjects=list(spec.filter_subjects),
        ),
    )
    try:
        yield spec
    finally:
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(spec.stream, spec.name)


def rotation(old: str, new: str) -> AdminChanged:
    return admin_change(
        AdminSubject.KEY_ROTATED,
        object_id=new,
        updated_values={"key_name": "sk-...abcd", "previous_token": old},
    )


async def total(pool: asyncpg.Pool, key: str) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT spend, requests, total_tokens, period_base, period_start, last_alias "
        "FROM ledger.spend_totals WHERE entity = 'key' AND entity_id = $1",
        key,
    )


async def kv_spend(js: JetStreamContext, key: str) -> Decimal | None:
    kv = await js.key_value(names.KV_SPEND)
    try:
        entry = await kv.get(spend_kv_key("key", key))
    except KeyNotFoundError:
        return None
    return SpendState.model_validate_json(entry.value or b"").spend


async def spend_on(pool: asyncpg.Pool, team: str, key: str, ns: range) -> None:
    events = [make_completed(team, n, api_key_hash=key) for n in ns]
    await write_events(pool, events, LedgerPolicy())


@pytest.mark.parametrize("store_audit_logs", [False, True])
async def test_rotation_carries_the_keys_spend_once(
    js: JetStreamContext,
    pool: asyncpg.Pool,
    audit_spec: names.ConsumerSpec,
    store_audit_logs: bool,
) -> None:
    team = f"rot-{uuid.uuid4().hex[:8]}"
    old, new = f"{team}-old", f"{team}-new"
    await spend_on(pool, team, old, range(3))  # 0.001 + 0.002 + 0.003
    period = datetime(2020, 1, 1, tzinfo=UTC)
    await pool.execute(
        "UPDATE ledger.spend_totals SET period_base = 0.001, period_start = $2 "
        "WHERE entity = 'key' AND entity_id = $1",
        old,
        period,
    )
    before = await total(pool, old)
    assert before is not None
    assert before["spend"] == Decimal("0.006")

    projection = SpendProjection(names.SCHEMA_LEDGER)
    announcer = Announcer(pool, projection, None, SpendMirror(js))
    service = AuditService(
        audit_spec.name,
        pool,
        AuditProjection(names.SCHEMA_LEDGER),
        LedgerPolicy(store_audit_logs=store_audit_logs),
        announcer=announcer,
        spend=projection,
    )
    event = rotation(old, new)
    await publish_event(js, event)
    await publish_raw(js, event.subject(), event.to_json())  # redelivered
    await run_until_idle(js, audit_spec, AuditSubscriber(audit_spec, service).handle)
    await announcer.stop()

    assert await total(pool, old) is None
    after = await total(pool, new)
    assert after is not None
    assert dict(after) == dict(before)  # every column moved, nothing counted twice
    assert await kv_spend(js, new) == Decimal("0.005")  # the current period's spend
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM ledger.spend_announcements "
            "WHERE entity = 'key' AND entity_id = ANY($1::text[])",
            [old, new],
        )
        == 0
    )
    audited = await pool.fetchval(
        "SELECT count(*) FROM ledger.audit_log WHERE id = $1", event.event_id
    )
    assert audited == (1 if store_audit_logs else 0)


async def test_rotation_merges_and_late_old_hash_spend_is_not_lost(
    pool: asyncpg.Pool,
) -> None:
    team = f"rot-{uuid.uuid4().hex[:8]}"
    old, new = f"{team}-old", f"{team}-new"
    await spend_on(pool, team, old, range(2))  # 0.003 on the old hash
    await spend_on(pool, team, new, range(10, 11))  # 0.011 on the new hash, processed first
    service = AuditService(
        "ledger-audit-rot-direct",
        pool,
        AuditProjection(names.SCHEMA_LEDGER),
        LedgerPolicy(store_audit_logs=False),
    )
    event = rotation(old, new)
    await service.record([event], received=1, started=0.0)
    merged = await total(pool, new)
    assert merged is not None
    assert (merged["spend"], merged["requests"]) == (Decimal("0.014"), 3)
    # Redelivered: nothing left to move.
    await service.record([event], received=1, started=0.0)
    assert await total(pool, new) == merged
    # A call made with the old key before rotating, recorded late: on the new hash, the
    # spend log keeping the hash the call used.
    await spend_on(pool, team, old, range(20, 21))
    assert await total(pool, old) is None
    late = await total(pool, new)
    assert late is not None
    assert (late["spend"], late["requests"]) == (Decimal("0.035"), 4)
    queued = await pool.fetchval(
        "SELECT spend FROM ledger.spend_announcements WHERE entity = 'key' AND entity_id = $1",
        new,
    )
    assert queued == Decimal("0.035")
    logged = await pool.fetchval(
        "SELECT api_key FROM ledger.spend_logs WHERE request_id = $1", f"{team}-req-20"
    )
    assert logged == old


async def test_late_spend_follows_a_chain_of_rotations(pool: asyncpg.Pool) -> None:
    team = f"rot-{uuid.uuid4().hex[:8]}"
    first, second, third = f"{team}-1", f"{team}-2", f"{team}-3"
    await spend_on(pool, team, first, range(1))  # 0.001
    service = AuditService(
        "ledger-audit-rot-chain",
        pool,
        AuditProjection(names.SCHEMA_LEDGER),
        LedgerPolicy(store_audit_logs=False),
    )
    await service.record([rotation(first, second)], received=1, started=0.0)
    await service.record([rotation(second, third)], received=1, started=0.0)
    # The first rotation delivered again, after the second: nothing moves back.
    await service.record([rotation(first, second)], received=1, started=0.0)
    await spend_on(pool, team, first, range(5, 6))  # 0.006, made with the first key
    await spend_on(pool, team, second, range(7, 8))  # 0.008, made with the second
    assert await total(pool, first) is None
    assert await total(pool, second) is None
    newest = await total(pool, third)
    assert newest is not None
    assert (newest["spend"], newest["requests"]) == (Decimal("0.015"), 3)


async def test_a_rotation_waits_for_a_spend_batch_in_flight_and_moves_it(
    pool: asyncpg.Pool,
) -> None:
    """A spend batch that read the rotations (none yet) before the rotation committed: the
    rotation waits for it and moves what it wrote, instead of leaving it on the old hash."""
    team = f"rot-{uuid.uuid4().hex[:8]}"
    old, new = f"{team}-old", f"{team}-new"
    projection = SpendProjection(names.SCHEMA_LEDGER)
    service = AuditService(
        "ledger-audit-rot-race",
        pool,
        AuditProjection(names.SCHEMA_LEDGER),
        LedgerPolicy(store_audit_logs=False),
    )
    event = make_completed(team, 3, api_key_hash=old)
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await projection.write(conn, [spend_row(event, LedgerPolicy())])
        rotating = asyncio.create_task(
            service.record([rotation(old, new)], received=1, started=0.0)
        )
        await asyncio.sleep(0.5)
        assert not rotating.done()  # waits for the batch's shared rotation lock
        await tx.commit()
    await asyncio.wait_for(rotating, 10)
    assert await total(pool, old) is None
    moved = await total(pool, new)
    assert moved is not None
    assert (moved["spend"], moved["requests"]) == (Decimal("0.004"), 1)
