"""Spend totals a committed batch must announce survive a ledger that dies before announcing."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from ledger_support import make_completed, run_until_idle, spend_subscriber
from litestar.testing import AsyncTestClient
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import KeyNotFoundError, NotFoundError

from tollgate_devstack.embedded import StackUrls
from tollgate_ledger.app import create_app
from tollgate_ledger.budgets import SpendMirror
from tollgate_ledger.settings import LedgerSettings
from tollgate_shared import names
from tollgate_shared.config import parse_config
from tollgate_shared.events import LedgerSpendUpdated, SpendTotal
from tollgate_shared.publishing import publish_event
from tollgate_shared.state import SpendState, spend_kv_key


@pytest.fixture
async def audit_spec(js: JetStreamContext) -> AsyncIterator[names.ConsumerSpec]:
    """An audit durable of the test's own, so the ledger under test leaves `ledger-audit` be."""
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


async def kv_spend(js: JetStreamContext, team: str) -> Decimal | None:
    kv = await js.key_value(names.KV_SPEND)
    try:
        entry = await kv.get(spend_kv_key("team", team))
    except KeyNotFoundError:
        return None
    return SpendState.model_validate_json(entry.value or b"").spend


async def queued(pool: asyncpg.Pool, team: str) -> Decimal | None:
    return await pool.fetchval(
        "SELECT spend FROM ledger.spend_announcements WHERE entity = 'team' AND entity_id = $1",
        team,
    )


async def test_a_ledger_killed_after_commit_is_announced_by_the_next_one(
    js: JetStreamContext,
    nc: NATS,
    pool: asyncpg.Pool,
    team: str,
    spend_spec: names.ConsumerSpec,
    audit_spec: names.ConsumerSpec,
    ledger_db: str,
    provisioned: StackUrls,
) -> None:
    events = [make_completed(team, n) for n in range(3)]
    expected = sum((e.spend for e in events), Decimal(0))
    for ev in events:
        await publish_event(js, ev)
    # A ledger that commits and acks, then dies before its announcement goes out.
    dying = spend_subscriber(spend_spec, js, pool, announce=False)
    await run_until_idle(js, spend_spec, dying.handle)
    total = await pool.fetchval(
        "SELECT spend FROM ledger.spend_totals WHERE entity = 'team' AND entity_id = $1", team
    )
    assert total == expected
    # Ingress's budget view is stale: the total never reached the bucket.
    assert await kv_spend(js, team) is None
    assert await queued(pool, team) == expected

    updates: list[LedgerSpendUpdated] = []

    async def on_update(msg: Msg) -> None:
        updates.append(LedgerSpendUpdated.model_validate_json(msg.data))

    sub = await nc.subscribe(names.LEDGER_SPEND_UPDATED, cb=on_update)
    settings = LedgerSettings(
        nats_url=provisioned.nats_url,
        database_url=ledger_db,
        master_key=None,
        config=None,
    )
    app = create_app(
        settings,
        parse_config({}),
        spend_spec=spend_spec,
        audit_spec=audit_spec,
        dead_letter_spec=None,
    )
    async with AsyncTestClient(app=app):
        # A fresh ledger converges the view without any new spend on that team.
        for _ in range(150):
            if await kv_spend(js, team) == expected and await queued(pool, team) is None:
                break
            await asyncio.sleep(0.1)
    await sub.unsubscribe()
    assert await kv_spend(js, team) == expected
    assert await queued(pool, team) is None
    announced = [t for u in updates for t in u.totals if (t.entity, t.entity_id) == ("team", team)]
    assert [t.spend for t in announced][-1:] == [expected]


class _FailingMirror(SpendMirror):
    async def write(self, totals: Any) -> list[SpendTotal]:
        raise RuntimeError("NATS went away")


async def test_a_failed_announcement_stays_queued_until_relayed(
    js: JetStreamContext,
    pool: asyncpg.Pool,
    team: str,
    spend_spec: names.ConsumerSpec,
) -> None:
    ev = make_completed(team, 1)
    await publish_event(js, ev)
    broken = spend_subscriber(spend_spec, js, pool, mirror=_FailingMirror(js))
    await run_until_idle(js, spend_spec, broken.handle)
    announcer = broken.service.announcer
    assert announcer is not None
    await announcer.stop()
    assert await kv_spend(js, team) is None
    assert await queued(pool, team) == ev.spend

    announcer.mirror = SpendMirror(js)
    assert await announcer.relay() >= 1
    assert await kv_spend(js, team) == ev.spend
    assert await queued(pool, team) is None
