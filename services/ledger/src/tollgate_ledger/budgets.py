"""Budgets read from admin's KV buckets, and spend totals mirrored into the spend bucket."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from decimal import Decimal

from nats.js import JetStreamContext
from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError

from tollgate_ledger.projections.spend import TotalAfter
from tollgate_shared import names
from tollgate_shared.events import SpendTotal
from tollgate_shared.kvview import KvView
from tollgate_shared.state import KeyState, SpendState, TeamState, UserState, spend_kv_key

log = logging.getLogger(__name__)

# What a JetStream KV key may contain (ids such as e-mail addresses may not fit).
_KV_KEY = re.compile(r"^[-/_=.a-zA-Z0-9]+$")


class BudgetBook:
    """Max budgets of keys, teams and users, from the live KV views admin keeps."""

    def __init__(self) -> None:
        self.keys: KvView[KeyState] = KvView(names.KV_KEYS, KeyState)
        self.teams: KvView[TeamState] = KvView(names.KV_TEAMS, TeamState)
        self.users: KvView[UserState] = KvView(names.KV_USERS, UserState)

    async def start(self, js: JetStreamContext) -> None:
        await asyncio.gather(self.keys.start(js), self.teams.start(js), self.users.start(js))

    async def stop(self) -> None:
        await asyncio.gather(self.keys.stop(), self.teams.stop(), self.users.stop())

    def max_budget(self, entity: str, entity_id: str) -> Decimal | None:
        state: KeyState | TeamState | UserState | None
        if entity == "key":
            state = self.keys.get(entity_id)
        elif entity == "team":
            state = self.teams.get(entity_id)
        elif entity == "user":
            state = self.users.get(entity_id)
        else:
            return None
        return state.max_budget if state is not None else None


def spend_totals(totals: Iterable[TotalAfter], budgets: BudgetBook | None) -> list[SpendTotal]:
    """The committed totals as event payload, with each entity's max budget where known."""
    return [
        SpendTotal(
            entity=t.entity,  # type: ignore[arg-type]
            entity_id=t.entity_id,
            spend=t.spend,
            max_budget=budgets.max_budget(t.entity, t.entity_id) if budgets else None,
        )
        for t in totals
    ]


class SpendMirror:
    """Writes each touched total to `tollgate-spend`, never moving a value backwards.

    Two ledger replicas may finish batches in either order; a compare-and-set on
    the entry's revision keeps the larger (later) total.
    """

    def __init__(self, js: JetStreamContext, attempts: int = 5) -> None:
        self._js = js
        self._attempts = attempts

    async def write(self, totals: Iterable[SpendTotal]) -> None:
        kv = await self._js.key_value(names.KV_SPEND)
        results = await asyncio.gather(
            *(self._write_one(kv, t) for t in totals), return_exceptions=True
        )
        for res in results:
            if isinstance(res, BaseException):
                log.warning("could not mirror a spend total to %s: %s", names.KV_SPEND, res)

    async def _write_one(self, kv: object, total: SpendTotal) -> None:
        key = spend_kv_key(total.entity, total.entity_id)
        value = SpendState(
            entity=total.entity,  # type: ignore[arg-type]
            entity_id=total.entity_id,
            spend=total.spend,
            max_budget=total.max_budget,
        ).to_json()
        if not _KV_KEY.match(key):
            log.debug("%s cannot be a KV key; total not mirrored", key)
            return
        for _ in range(self._attempts):
            try:
                entry = await kv.get(key)  # type: ignore[attr-defined]
            except (KeyNotFoundError, KeyDeletedError):
                try:
                    await kv.create(key, value)  # type: ignore[attr-defined]
                    return
                except KeyWrongLastSequenceError:
                    continue
            current = _spend_of(entry.value)
            if current is not None and current >= total.spend:
                return
            try:
                await kv.update(key, value, last=entry.revision)  # type: ignore[attr-defined]
                return
            except KeyWrongLastSequenceError:
                continue
        raise RuntimeError(f"{key}: gave up after {self._attempts} concurrent updates")


def _spend_of(raw: bytes | None) -> Decimal | None:
    if not raw:
        return None
    try:
        return SpendState.model_validate_json(raw).spend
    except ValueError:
        return None
