"""Budgets read from admin's KV buckets, and spend totals mirrored into the spend bucket
(the ledger's KV adapters)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from nats.js import JetStreamContext
from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError

from tollgate_ledger.projections.spend import TotalAfter
from tollgate_shared import durations, names
from tollgate_shared.events import SpendTotal
from tollgate_shared.kvview import KvView
from tollgate_shared.state import KeyState, SpendState, TeamState, UserState, spend_kv_key

log = logging.getLogger(__name__)

# What a JetStream KV key may contain (ids such as e-mail addresses may not fit).
_KV_KEY = re.compile(r"^[-/_=.a-zA-Z0-9]+$")


class BudgetBook:
    """Max budgets of keys, teams and users, from the live KV views admin keeps."""

    def __init__(self, tz: ZoneInfo | None = None) -> None:
        self.tz = tz or durations.budget_timezone(None)
        self.keys: KvView[KeyState] = KvView(names.KV_KEYS, KeyState)
        self.teams: KvView[TeamState] = KvView(names.KV_TEAMS, TeamState)
        self.users: KvView[UserState] = KvView(names.KV_USERS, UserState)

    async def start(self, js: JetStreamContext) -> None:
        await asyncio.gather(self.keys.start(js), self.teams.start(js), self.users.start(js))

    async def stop(self) -> None:
        await asyncio.gather(self.keys.stop(), self.teams.stop(), self.users.stop())

    def _views(self) -> dict[str, KvView[Any]]:
        return {"key": self.keys, "team": self.teams, "user": self.users}

    def _state(self, entity: str, entity_id: str) -> KeyState | TeamState | UserState | None:
        view = self._views().get(entity)
        return view.get(entity_id) if view is not None else None

    def max_budget(self, entity: str, entity_id: str) -> Decimal | None:
        state = self._state(entity, entity_id)
        return state.max_budget if state is not None else None

    def reset_at(self, entity: str, entity_id: str, now: datetime) -> datetime | None:
        """When the entity's current budget period ends; None without a `budget_duration`."""
        state = self._state(entity, entity_id)
        period = durations.current_period(state.budget_duration, now, self.tz) if state else None
        return period[1] if period else None

    def periods(self, now: datetime) -> list[tuple[str, str, datetime]]:
        """`(entity, entity_id, period start)` of every key, team and user with a duration."""
        out: list[tuple[str, str, datetime]] = []
        for entity, view in self._views().items():
            for entity_id, state in view.items().items():
                period = durations.current_period(state.budget_duration, now, self.tz)
                if period is not None:
                    out.append((entity, entity_id, period[0]))
        return out


def spend_totals(
    totals: Iterable[TotalAfter], budgets: BudgetBook | None, now: datetime | None = None
) -> list[SpendTotal]:
    """The committed totals as event payload, with each entity's budget where known."""
    now = now or datetime.now(UTC)
    return [
        SpendTotal(
            entity=t.entity,  # type: ignore[arg-type]
            entity_id=t.entity_id,
            spend=t.spend,
            max_budget=budgets.max_budget(t.entity, t.entity_id) if budgets else None,
            period_start=t.period_start,
            budget_reset_at=budgets.reset_at(t.entity, t.entity_id, now) if budgets else None,
        )
        for t in totals
    ]


class SpendMirror:
    """Writes each touched total to `tollgate-spend`, never moving a value backwards.

    A total of a later budget period replaces one of an earlier period even when it is
    smaller; within one period, only a larger total replaces a smaller.

    Two ledger replicas may finish batches in either order; a compare-and-set on
    the entry's revision keeps the larger (later) total. The revision and value this
    mirror last wrote or read of each entry are remembered, so a total usually goes out
    as one compare-and-set on that revision; only when another writer moved the entry
    meanwhile (the set fails) is the entry read first.
    """

    # Entries remembered; past this many the memory starts over (an entry then costs one
    # read again), so a flood of distinct end users cannot grow it.
    KNOWN_LIMIT = 50_000

    def __init__(self, js: JetStreamContext, attempts: int = 5) -> None:
        self._js = js
        self._attempts = attempts
        self._kv: Any = None
        self._known: dict[str, tuple[int, SpendState]] = {}

    async def write(self, totals: Iterable[SpendTotal]) -> list[SpendTotal]:
        """Mirror each total; returns those that could not be written (to try again)."""
        todo = list(totals)
        if self._kv is None:
            self._kv = await self._js.key_value(names.KV_SPEND)
        if len(self._known) + len(todo) > self.KNOWN_LIMIT:
            self._known.clear()
        results = await asyncio.gather(
            *(self._write_one(self._kv, t) for t in todo), return_exceptions=True
        )
        missed = []
        for total, res in zip(todo, results, strict=True):
            if isinstance(res, BaseException):
                log.warning("could not mirror a spend total to %s: %s", names.KV_SPEND, res)
                missed.append(total)
        return missed

    async def _write_one(self, kv: Any, total: SpendTotal) -> None:
        key = spend_kv_key(total.entity, total.entity_id)
        state = SpendState(
            entity=total.entity,  # type: ignore[arg-type]
            entity_id=total.entity_id,
            spend=total.spend,
            max_budget=total.max_budget,
            period_start=total.period_start,
            budget_reset_at=total.budget_reset_at,
        )
        if not _KV_KEY.match(key):
            log.debug("%s cannot be a KV key; total not mirrored", key)
            return
        value = state.to_json()
        known = self._known.pop(key, None)
        if known is not None:
            revision, current = known
            if not state.supersedes(current):
                # What is there now is `current` or newer (it only moves forward).
                self._known[key] = known
                return
            try:
                self._known[key] = (await kv.update(key, value, last=revision), state)
                return
            except KeyWrongLastSequenceError:
                pass  # another writer moved it: read it below
        for _ in range(self._attempts):
            try:
                entry = await kv.get(key)
            except (KeyNotFoundError, KeyDeletedError):
                try:
                    self._known[key] = (await kv.create(key, value), state)
                    return
                except KeyWrongLastSequenceError:
                    continue
            stored = _state_of(entry.value)
            if stored is not None and not state.supersedes(stored):
                self._known[key] = (entry.revision, stored)
                return
            try:
                self._known[key] = (await kv.update(key, value, last=entry.revision), state)
                return
            except KeyWrongLastSequenceError:
                continue
        raise RuntimeError(f"{key}: gave up after {self._attempts} concurrent updates")


def _state_of(raw: bytes | None) -> SpendState | None:
    if not raw:
        return None
    try:
        return SpendState.model_validate_json(raw)
    except ValueError:
        return None
