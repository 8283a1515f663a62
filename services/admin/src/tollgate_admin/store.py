"""PostgreSQL access for schema `admin`: plain SQL over an asyncpg connection the caller owns.

Every function takes the connection of the caller's transaction, so one request's
writes (and its outbox events) commit or roll back together.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from tollgate_shared import names

Row = dict[str, Any]

_S = names.SCHEMA_ADMIN

# Columns a request may set, per table (never interpolate anything else into SQL).
KEY_COLUMNS = (
    "key_name",
    "key_alias",
    "team_id",
    "user_id",
    "models",
    "max_budget",
    "budget_duration",
    "tpm_limit",
    "rpm_limit",
    "max_parallel_requests",
    "expires",
    "blocked",
    "metadata",
    "created_by",
    "updated_by",
)
TEAM_COLUMNS = (
    "team_alias",
    "models",
    "max_budget",
    "budget_duration",
    "tpm_limit",
    "rpm_limit",
    "blocked",
    "metadata",
    "logging_disabled",
)
USER_COLUMNS = (
    "user_email",
    "user_alias",
    "user_role",
    "models",
    "max_budget",
    "budget_duration",
    "tpm_limit",
    "rpm_limit",
    "metadata",
)
MODEL_COLUMNS = ("model_name", "litellm_params", "model_info", "created_by", "updated_by")


async def init_connection(conn: asyncpg.Connection) -> None:
    """jsonb in and out as Python values."""
    await conn.set_type_codec(
        "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog", format="text"
    )


def _row(record: asyncpg.Record | None) -> Row | None:
    return dict(record) if record is not None else None


def _rows(records: Iterable[asyncpg.Record]) -> list[Row]:
    return [dict(r) for r in records]


@dataclass(frozen=True)
class Table:
    """One entity table keyed by a text id: the statements every entity shares."""

    name: str
    pk: str
    updatable: tuple[str, ...]
    order_by: str = ""

    @property
    def _qualified(self) -> str:
        return f'"{_S}".{self.name}'

    async def get(self, conn: asyncpg.Connection, pk: str, *, lock: bool = False) -> Row | None:
        sql = f"SELECT * FROM {self._qualified} WHERE {self.pk} = $1"
        return _row(await conn.fetchrow(sql + (" FOR UPDATE" if lock else ""), pk))

    async def insert(self, conn: asyncpg.Connection, pk: str, values: Mapping[str, Any]) -> Row:
        row = {self.pk: pk, **values}
        placeholders = ", ".join(f"${i}" for i in range(1, len(row) + 1))
        sql = (
            f"INSERT INTO {self._qualified} ({', '.join(row)}) VALUES ({placeholders}) RETURNING *"
        )
        record = await conn.fetchrow(sql, *row.values())
        assert record is not None
        return dict(record)

    async def update(
        self, conn: asyncpg.Connection, pk: str, values: Mapping[str, Any]
    ) -> Row | None:
        unknown = set(values) - set(self.updatable)
        if unknown:
            raise ValueError(f"not updatable on {self.name}: {sorted(unknown)}")
        sets = [f"{c} = ${i}" for i, c in enumerate(values, start=2)]
        sets.append("updated_at = now()")
        sql = f"UPDATE {self._qualified} SET {', '.join(sets)} WHERE {self.pk} = $1 RETURNING *"
        return _row(await conn.fetchrow(sql, pk, *values.values()))

    async def delete(self, conn: asyncpg.Connection, pk: str) -> Row | None:
        sql = f"DELETE FROM {self._qualified} WHERE {self.pk} = $1 RETURNING *"
        return _row(await conn.fetchrow(sql, pk))

    async def all(self, conn: asyncpg.Connection) -> list[Row]:
        order = f" ORDER BY {self.order_by}" if self.order_by else ""
        return _rows(await conn.fetch(f"SELECT * FROM {self._qualified}{order}"))


KEYS = Table("keys", "token", KEY_COLUMNS)
TEAMS = Table("teams", "team_id", TEAM_COLUMNS)
USERS = Table("users", "user_id", USER_COLUMNS)
MODELS = Table("models", "model_id", MODEL_COLUMNS, order_by="created_at, model_id")


# --- keys ----------------------------------------------------------------------------------
async def get_key_by_alias(conn: asyncpg.Connection, alias: str) -> Row | None:
    return _row(await conn.fetchrow(f'SELECT * FROM "{_S}".keys WHERE key_alias = $1', alias))


async def lock_key(conn: asyncpg.Connection, token: str) -> Row | None:
    return await KEYS.get(conn, token, lock=True)


async def replace_token(conn: asyncpg.Connection, old: str, new: str, new_name: str) -> Row | None:
    return _row(
        await conn.fetchrow(
            f'UPDATE "{_S}".keys SET token = $2, key_name = $3, updated_at = now() '
            "WHERE token = $1 RETURNING *",
            old,
            new,
            new_name,
        )
    )


async def delete_keys(conn: asyncpg.Connection, tokens: Sequence[str]) -> list[Row]:
    return _rows(
        await conn.fetch(
            f'DELETE FROM "{_S}".keys WHERE token = ANY($1::text[]) RETURNING *', list(tokens)
        )
    )


async def keys_where(
    conn: asyncpg.Connection, *, team_id: str | None = None, user_id: str | None = None
) -> list[Row]:
    if team_id is not None:
        sql, arg = f'SELECT * FROM "{_S}".keys WHERE team_id = $1 ORDER BY created_at', team_id
    elif user_id is not None:
        sql, arg = f'SELECT * FROM "{_S}".keys WHERE user_id = $1 ORDER BY created_at', user_id
    else:
        raise ValueError("team_id or user_id")
    return _rows(await conn.fetch(sql, arg))


async def list_keys(
    conn: asyncpg.Connection,
    *,
    page: int,
    size: int,
    user_id: str | None,
    team_id: str | None,
    key_alias: str | None,
    key_hash: str | None,
) -> tuple[list[Row], int]:
    conds: list[str] = []
    args: list[Any] = []
    for column, value in (
        ("user_id", user_id),
        ("team_id", team_id),
        ("key_alias", key_alias),
        ("token", key_hash),
    ):
        if value is not None:
            args.append(value)
            conds.append(f"{column} = ${len(args)}")
    where = f"WHERE {' AND '.join(conds)}" if conds else ""
    total = await conn.fetchval(f'SELECT count(*) FROM "{_S}".keys {where}', *args)
    args.extend([size, (page - 1) * size])
    rows = await conn.fetch(
        f'SELECT * FROM "{_S}".keys {where} ORDER BY created_at DESC, token DESC '
        f"LIMIT ${len(args) - 1} OFFSET ${len(args)}",
        *args,
    )
    return _rows(rows), int(total)


async def list_users(
    conn: asyncpg.Connection,
    *,
    page: int,
    size: int,
    role: str | None,
    user_ids: list[str] | None,
) -> tuple[list[Row], int]:
    """One page of users, newest first, with the total that match."""
    conds: list[str] = []
    args: list[Any] = []
    if role is not None:
        args.append(role)
        conds.append(f"user_role = ${len(args)}")
    if user_ids is not None:
        args.append(user_ids)
        conds.append(f"user_id = ANY(${len(args)}::text[])")
    where = f"WHERE {' AND '.join(conds)}" if conds else ""
    total = await conn.fetchval(f'SELECT count(*) FROM "{_S}".users {where}', *args)
    args.extend([size, (page - 1) * size])
    rows = await conn.fetch(
        f'SELECT * FROM "{_S}".users {where} ORDER BY created_at DESC, user_id DESC '
        f"LIMIT ${len(args) - 1} OFFSET ${len(args)}",
        *args,
    )
    return _rows(rows), int(total)


# --- teams ---------------------------------------------------------------------------------
async def list_teams(conn: asyncpg.Connection, user_id: str | None = None) -> list[Row]:
    if user_id is None:
        return _rows(await conn.fetch(f'SELECT * FROM "{_S}".teams ORDER BY team_alias, team_id'))
    return _rows(
        await conn.fetch(
            f'SELECT t.* FROM "{_S}".teams t JOIN "{_S}".team_members m USING (team_id) '
            "WHERE m.user_id = $1 ORDER BY t.team_alias, t.team_id",
            user_id,
        )
    )


async def members(conn: asyncpg.Connection, team_id: str) -> list[Row]:
    return _rows(
        await conn.fetch(
            f'SELECT user_id, user_email, role FROM "{_S}".team_members '
            "WHERE team_id = $1 ORDER BY added_at, user_id",
            team_id,
        )
    )


async def upsert_member(
    conn: asyncpg.Connection, team_id: str, user_id: str, user_email: str | None, role: str
) -> None:
    await conn.execute(
        f'INSERT INTO "{_S}".team_members (team_id, user_id, user_email, role) '
        "VALUES ($1, $2, $3, $4) ON CONFLICT (team_id, user_id) "
        "DO UPDATE SET role = EXCLUDED.role, user_email = EXCLUDED.user_email",
        team_id,
        user_id,
        user_email,
        role,
    )


async def remove_member(conn: asyncpg.Connection, team_id: str, user_id: str) -> bool:
    status = await conn.execute(
        f'DELETE FROM "{_S}".team_members WHERE team_id = $1 AND user_id = $2', team_id, user_id
    )
    return bool(status.endswith(" 1"))


async def user_team_ids(conn: asyncpg.Connection, user_id: str) -> list[str]:
    return [
        r["team_id"]
        for r in await conn.fetch(
            f'SELECT team_id FROM "{_S}".team_members WHERE user_id = $1 ORDER BY team_id',
            user_id,
        )
    ]


async def callbacks(conn: asyncpg.Connection, team_id: str) -> list[Row]:
    return _rows(
        await conn.fetch(
            f'SELECT callback_name, callback_type, callback_vars FROM "{_S}".team_callbacks '
            "WHERE team_id = $1 ORDER BY id",
            team_id,
        )
    )


async def add_callback(
    conn: asyncpg.Connection, team_id: str, name: str, kind: str, variables: Mapping[str, Any]
) -> bool:
    """False when the same name and type is already configured for the team."""
    status = await conn.execute(
        f'INSERT INTO "{_S}".team_callbacks (team_id, callback_name, callback_type, callback_vars)'
        " VALUES ($1, $2, $3, $4) ON CONFLICT (team_id, callback_name, callback_type) DO NOTHING",
        team_id,
        name,
        kind,
        dict(variables),
    )
    return bool(status.endswith(" 1"))


async def clear_callbacks(conn: asyncpg.Connection, team_id: str) -> None:
    await conn.execute(f'DELETE FROM "{_S}".team_callbacks WHERE team_id = $1', team_id)


# --- users ---------------------------------------------------------------------------------
async def users_by_email(conn: asyncpg.Connection, email: str) -> list[Row]:
    return _rows(
        await conn.fetch(
            f'SELECT * FROM "{_S}".users WHERE user_email = $1 ORDER BY created_at', email
        )
    )


async def teams_of_member(conn: asyncpg.Connection, user_id: str) -> list[str]:
    return await user_team_ids(conn, user_id)


async def remove_member_everywhere(conn: asyncpg.Connection, user_id: str) -> list[str]:
    return [
        r["team_id"]
        for r in await conn.fetch(
            f'DELETE FROM "{_S}".team_members WHERE user_id = $1 RETURNING team_id', user_id
        )
    ]


async def all_memberships(conn: asyncpg.Connection) -> list[Row]:
    return _rows(
        await conn.fetch(
            f'SELECT team_id, user_id, user_email, role FROM "{_S}".team_members '
            "ORDER BY added_at, user_id"
        )
    )


async def all_callbacks(conn: asyncpg.Connection) -> list[Row]:
    return _rows(
        await conn.fetch(
            f"SELECT team_id, callback_name, callback_type, callback_vars "
            f'FROM "{_S}".team_callbacks ORDER BY id'
        )
    )


# --- models --------------------------------------------------------------------------------
# The entity statements under the names the service calls them by.
get_key, insert_key, update_key, all_keys = KEYS.get, KEYS.insert, KEYS.update, KEYS.all
get_team, insert_team, update_team = TEAMS.get, TEAMS.insert, TEAMS.update
delete_team, all_teams = TEAMS.delete, TEAMS.all
get_user, insert_user, update_user = USERS.get, USERS.insert, USERS.update
delete_user, all_users = USERS.delete, USERS.all
get_model, insert_model, update_model = MODELS.get, MODELS.insert, MODELS.update
delete_model, all_models = MODELS.delete, MODELS.all


# --- outbox --------------------------------------------------------------------------------
async def add_outbox(conn: asyncpg.Connection, event_id: str, payload: str) -> None:
    await conn.execute(
        f'INSERT INTO "{_S}".outbox (event_id, payload) VALUES ($1, $2)', event_id, payload
    )


async def claim_outbox(conn: asyncpg.Connection, limit: int) -> list[Row]:
    """The oldest pending events, locked so another replica's relay skips them."""
    return _rows(
        await conn.fetch(
            f'SELECT seq, event_id, payload FROM "{_S}".outbox ORDER BY seq '
            "LIMIT $1 FOR UPDATE SKIP LOCKED",
            limit,
        )
    )


async def delete_outbox(conn: asyncpg.Connection, seqs: Sequence[int]) -> None:
    await conn.execute(f'DELETE FROM "{_S}".outbox WHERE seq = ANY($1::bigint[])', list(seqs))


async def outbox_depth(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval(f'SELECT count(*) FROM "{_S}".outbox'))
