"""What every area of the service shares: its dependencies, and the lookups and KV refreshes
of teams, users and keys that more than one area makes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from tollgate_admin import key_material, store, views
from tollgate_admin.errors import NotFoundError
from tollgate_admin.uow import Unit, UnitOfWork
from tollgate_shared import durations, names
from tollgate_shared.config import TollgateConfig
from tollgate_shared.sealing import Sealer


def now() -> datetime:
    return datetime.now(UTC)


def money(value: float | None) -> Decimal | None:
    return Decimal(str(value)) if value is not None else None


def new_id() -> str:
    return str(uuid.uuid4())


class Area:
    """One area's use cases get the unit of work, the KV state, the config and the sealer."""

    def __init__(self, uow: UnitOfWork, cfg: TollgateConfig, sealer: Sealer | None = None) -> None:
        self.uow = uow
        self.kv = uow.kv
        self.cfg = cfg
        # Credentials are sealed before they are stored (PostgreSQL and the KV buckets).
        self.sealer = sealer
        self.zone = durations.budget_timezone(cfg.litellm_settings.timezone)

    def _reset_at(self, public: dict[str, Any]) -> dict[str, Any]:
        return views.with_reset_at(public, self.zone, now())


# --- lookups -------------------------------------------------------------------------------
async def require_team(
    conn: asyncpg.Connection, team_id: str, param: str = "team_id", lock: bool = False
) -> store.Row:
    row = await store.get_team(conn, team_id, lock=lock)
    if row is None:
        raise NotFoundError(f"team {team_id!r} does not exist", param)
    return row


async def require_key(conn: asyncpg.Connection, ref: str, param: str) -> store.Row:
    row = await store.lock_key(conn, key_material.token_of(ref))
    if row is None:
        raise NotFoundError(
            f"key {key_material.key_name(ref) if ref.startswith('sk-') else ref!r} does not exist",
            param,
        )
    return row


async def team_public(conn: asyncpg.Connection, row: store.Row) -> dict[str, Any]:
    team_id = row["team_id"]
    return views.team_public(
        row, await store.members(conn, team_id), await store.callbacks(conn, team_id)
    )


async def user_public(conn: asyncpg.Connection, row: store.Row) -> dict[str, Any]:
    return views.user_public(row, await store.user_team_ids(conn, row["user_id"]))


# --- shared state refreshes --------------------------------------------------------
async def refresh_team(unit: Unit, team_id: str) -> None:
    row = await store.get_team(unit.conn, team_id)
    if row is None:
        unit.delete(names.KV_TEAMS, team_id)
        return
    state = views.team_state(
        row, await store.members(unit.conn, team_id), await store.callbacks(unit.conn, team_id)
    )
    unit.put(names.KV_TEAMS, team_id, state)


async def refresh_user(unit: Unit, user_id: str) -> None:
    row = await store.get_user(unit.conn, user_id)
    if row is None:
        unit.delete(names.KV_USERS, user_id)
        return
    unit.put(
        names.KV_USERS,
        user_id,
        views.user_state(row, await store.user_team_ids(unit.conn, user_id)),
    )
