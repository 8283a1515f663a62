"""Budget periods against real PostgreSQL and NATS KV: a reset moves the base, never the total."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
from ledger_support import make_completed
from nats.js import JetStreamContext

from tollgate_ledger.budgets import BudgetBook, SpendMirror, spend_totals
from tollgate_ledger.policy import LedgerPolicy
from tollgate_ledger.projections.spend import SpendProjection, write_events
from tollgate_ledger.service import reset_periods
from tollgate_shared import names
from tollgate_shared.durations import budget_period
from tollgate_shared.events import SpendTotal
from tollgate_shared.state import SpendState, TeamState, spend_kv_key


async def team_row(pool: asyncpg.Pool, team: str) -> asyncpg.Record:
    row = await pool.fetchrow(
        "SELECT spend, period_base, period_start FROM ledger.spend_totals "
        "WHERE entity = 'team' AND entity_id = $1",
        team,
    )
    assert row is not None
    return row


async def budget_book(js: JetStreamContext, team: str, duration: str) -> BudgetBook:
    kv = await js.key_value(names.KV_TEAMS)
    state = TeamState(team_id=team, max_budget=Decimal("1"), budget_duration=duration)
    await kv.put(team, state.to_json())
    book = BudgetBook()
    await book.start(js)
    for _ in range(50):
        if book.teams.get(team) is not None:
            return book
        await asyncio.sleep(0.02)
    raise AssertionError("team never reached the budget book")


async def test_reset_starts_a_new_period_without_touching_lifetime_spend(
    pool: asyncpg.Pool, js: JetStreamContext, team: str
) -> None:
    projection = SpendProjection(names.SCHEMA_LEDGER)
    policy = LedgerPolicy()
    book = await budget_book(js, team, "1d")
    try:
        first = [make_completed(team, n) for n in range(3)]
        await write_events(pool, first, policy)
        spent = sum((e.spend for e in first), Decimal(0))

        # Today: the row was written inside today's period, so all of it counts.
        now = datetime.now(UTC)
        reset = await reset_periods(pool, projection, book, now)
        mine = [t for t in reset if t.entity == "team" and t.entity_id == team]
        assert [t.spend for t in mine] == [spent]
        assert mine[0].period_start == budget_period("1d", now)[0]
        # Idempotent: running it again (or on a second replica) changes nothing.
        again = await reset_periods(pool, projection, book, now)
        assert not [t for t in again if t.entity_id == team]

        # Two days on, a new period begins: nothing spent in it yet, lifetime unchanged.
        later = now + timedelta(days=2)
        reset = await reset_periods(pool, projection, book, later)
        mine = [t for t in reset if t.entity == "team" and t.entity_id == team]
        assert [t.spend for t in mine] == [Decimal(0)]
        row = await team_row(pool, team)
        assert (row["spend"], row["period_base"]) == (spent, spent)
        assert row["period_start"] == budget_period("1d", later)[0]

        # What is spent next counts against the new period only; a redelivery adds nothing.
        second = [make_completed(team, n) for n in range(3, 5)]
        await write_events(pool, second, policy)
        await write_events(pool, second, policy)
        more = sum((e.spend for e in second), Decimal(0))
        row = await team_row(pool, team)
        assert row["spend"] == spent + more
        assert row["spend"] - row["period_base"] == more

        # The totals the ledger announces carry the period and its end for the team.
        announced = spend_totals([t for t in reset if t.entity_id == team], book, now=later)
        assert announced[0].period_start == budget_period("1d", later)[0]
        assert announced[0].budget_reset_at == budget_period("1d", later)[1]
        assert announced[0].max_budget == Decimal("1")
    finally:
        await book.stop()


async def test_mirror_lets_a_new_period_replace_a_larger_old_total(
    js: JetStreamContext, team: str
) -> None:
    mirror = SpendMirror(js)
    kv = await js.key_value(names.KV_SPEND)
    old_start = datetime(2026, 11, 1, tzinfo=UTC)
    new_start = datetime(2026, 12, 1, tzinfo=UTC)

    def total(spend: str, start: datetime) -> list[SpendTotal]:
        return [SpendTotal(entity="team", entity_id=team, spend=Decimal(spend), period_start=start)]

    async def stored() -> SpendState:
        entry = await kv.get(spend_kv_key("team", team))
        return SpendState.model_validate_json(entry.value or b"")

    await mirror.write(total("9", old_start))
    await mirror.write(total("1", new_start))
    assert (await stored()).spend == Decimal("1")
    # A late, larger total of the old period never overwrites the new period.
    await mirror.write(total("12", old_start))
    assert (await stored()).spend == Decimal("1")
    # Within one period only a larger total wins (replicas may finish out of order).
    await mirror.write(total("3", new_start))
    await mirror.write(total("2", new_start))
    assert (await stored()).spend == Decimal("3")


async def test_mirrors_of_two_replicas_never_move_a_total_back(
    js: JetStreamContext, team: str
) -> None:
    """Each mirror remembers the revision it wrote; the other replica's writes in between
    make its compare-and-set fail, and it reads the entry before deciding."""
    one, two = SpendMirror(js), SpendMirror(js)
    kv = await js.key_value(names.KV_SPEND)
    start = datetime(2026, 12, 1, tzinfo=UTC)

    def total(spend: str) -> list[SpendTotal]:
        return [SpendTotal(entity="team", entity_id=team, spend=Decimal(spend), period_start=start)]

    async def stored() -> Decimal:
        entry = await kv.get(spend_kv_key("team", team))
        return SpendState.model_validate_json(entry.value or b"").spend

    assert await one.write(total("5")) == []
    assert await two.write(total("9")) == []
    assert await one.write(total("7")) == []  # stale revision: reads 9, keeps it
    assert await stored() == Decimal("9")
    assert await one.write(total("12")) == []
    assert await two.write(total("10")) == []
    assert await stored() == Decimal("12")
    await kv.delete(spend_kv_key("team", team))  # gone (say, purged): written again
    assert await one.write(total("13")) == []
    assert await stored() == Decimal("13")
