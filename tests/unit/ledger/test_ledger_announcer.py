"""The announcer's memory of committed totals (service.Announcer), without NATS or a database."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from tollgate_ledger.projections.spend import SpendProjection, TotalAfter
from tollgate_ledger.service import Announcer
from tollgate_shared.events import Event, LedgerSpendUpdated

START = datetime(2026, 12, 1, tzinfo=UTC)


async def announced(*batches: list[TotalAfter]) -> list[list[tuple[str, Decimal]]]:
    """What goes out when `batches` are handed over before the announcer gets to run."""
    events: list[Event] = []

    async def publish(event: Event) -> None:
        events.append(event)

    announcer = Announcer(None, SpendProjection("ledger"), publish=publish, every_s=0.0)
    for totals in batches:
        announcer.queue(totals)
    await announcer.stop()
    return [
        [(t.entity_id, t.spend) for t in e.totals]
        for e in events
        if isinstance(e, LedgerSpendUpdated)
    ]


async def test_two_commits_handing_over_out_of_order_announce_the_later_total() -> None:
    later = TotalAfter("team", "t", Decimal("0.50"), START)
    earlier = TotalAfter("team", "t", Decimal("0.25"), START)
    assert await announced([later], [earlier]) == [[("t", Decimal("0.50"))]]
    assert await announced([earlier], [later]) == [[("t", Decimal("0.50"))]]


async def test_a_new_budget_period_is_later_whatever_its_spend() -> None:
    old = TotalAfter("key", "k", Decimal("9"), START)
    stale = TotalAfter("key", "k", Decimal("0"), START.replace(month=11, day=30, hour=23))
    new_period = TotalAfter("key", "k", Decimal("1"), START.replace(day=2))
    assert await announced([old], [new_period]) == [[("k", Decimal("1"))]]
    assert await announced([old], [stale]) == [[("k", Decimal("9"))]]  # an earlier period
