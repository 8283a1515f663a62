"""The control plane's use cases: each write is one PostgreSQL transaction that also queues
its AdminChanged events (outbox); after commit the KV buckets are updated and the events
published. Reads answer from PostgreSQL (plus the ledger's spend bucket for display)."""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
from pydantic import ValidationError

from tollgate_admin import rules, schemas, store, views
from tollgate_admin.errors import AdminError, BadRequestError, ConflictError, NotFoundError
from tollgate_admin.propagation import KvOp, KvState, OutboxRelay
from tollgate_shared import durations, names
from tollgate_shared.config import LitellmParams, TollgateConfig
from tollgate_shared.events import AdminChanged
from tollgate_shared.sealing import Sealer
from tollgate_shared.state import hash_key

PRODUCER = "admin"


@dataclass(frozen=True)
class Actor:
    """Who makes a change, as the audit log records it."""

    changed_by: str
    api_key_hash: str


@dataclass
class Unit:
    """One request's transaction: its connection, the events and the KV writes it produces."""

    conn: asyncpg.Connection
    actor: Actor
    events: list[AdminChanged] = field(default_factory=list)
    kv_ops: list[KvOp] = field(default_factory=list)

    def record(
        self,
        entity: str,
        action: str,
        object_id: str,
        before: dict[str, Any] | None,
        updated: dict[str, Any] | None,
    ) -> None:
        self.events.append(
            AdminChanged(
                producer=PRODUCER,
                entity=entity,  # type: ignore[arg-type]
                action=action,
                object_id=object_id,
                changed_by=self.actor.changed_by,
                changed_by_api_key=self.actor.api_key_hash,
                before_value=before,
                updated_values=updated,
            )
        )

    def put(self, bucket: str, key: str, value: Any) -> None:
        self.kv_ops.append(KvOp(bucket, key, value))

    def delete(self, bucket: str, key: str) -> None:
        self.kv_ops.append(KvOp(bucket, key, None))


def db_error(exc: asyncpg.PostgresError) -> AdminError:
    """A database refusal as the client's 4xx (what it sent could not be stored)."""
    detail = getattr(exc, "detail", None) or str(exc)
    column = getattr(exc, "column_name", None) or getattr(exc, "constraint_name", None)
    if isinstance(exc, asyncpg.UniqueViolationError):
        return ConflictError(f"already exists: {detail}", column)
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return BadRequestError(f"refers to something that does not exist: {detail}", column)
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError | asyncpg.DataError):
        return BadRequestError(f"cannot be stored: {detail}", column)
    return BadRequestError(f"cannot be stored: {type(exc).__name__}", column)


def _now() -> datetime:
    return datetime.now(UTC)


def _money(value: float | None) -> Decimal | None:
    return Decimal(str(value)) if value is not None else None


def _new_id() -> str:
    return str(uuid.uuid4())


class AdminService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        kv: KvState,
        relay: OutboxRelay,
        cfg: TollgateConfig,
        sealer: Sealer | None = None,
    ) -> None:
        self.pool = pool
        # Credentials are sealed before they are stored (PostgreSQL and the KV buckets).
        self.sealer = sealer
        self.kv = kv
        self.relay = relay
        self.cfg = cfg
        self.zone = durations.budget_timezone(cfg.litellm_settings.timezone)

    def _reset_at(self, public: dict[str, Any]) -> dict[str, Any]:
        return views.with_reset_at(public, self.zone, _now())

    @asynccontextmanager
    async def _unit(self, actor: Actor) -> AsyncIterator[Unit]:
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                unit = Unit(conn, actor)
                yield unit
                for event in unit.events:
                    await store.add_outbox(conn, event.event_id, event.model_dump_json())
        except asyncpg.PostgresError as exc:
            raise db_error(exc) from exc
        await self.kv.apply(unit.kv_ops, self.pool)
        if unit.events:
            await self.relay.flush()

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[asyncpg.Connection]:
        try:
            async with self.pool.acquire() as conn:
                yield conn
        except asyncpg.PostgresError as exc:
            raise db_error(exc) from exc

    # --- shared state refreshes --------------------------------------------------------
    async def _refresh_team(self, unit: Unit, team_id: str) -> None:
        row = await store.get_team(unit.conn, team_id)
        if row is None:
            unit.delete(names.KV_TEAMS, team_id)
            return
        state = views.team_state(
            row, await store.members(unit.conn, team_id), await store.callbacks(unit.conn, team_id)
        )
        unit.put(names.KV_TEAMS, team_id, state)

    async def _refresh_user(self, unit: Unit, user_id: str) -> None:
        row = await store.get_user(unit.conn, user_id)
        if row is None:
            unit.delete(names.KV_USERS, user_id)
            return
        unit.put(
            names.KV_USERS,
            user_id,
            views.user_state(row, await store.user_team_ids(unit.conn, user_id)),
        )

    async def _team_public(self, conn: asyncpg.Connection, row: store.Row) -> dict[str, Any]:
        team_id = row["team_id"]
        return views.team_public(
            row, await store.members(conn, team_id), await store.callbacks(conn, team_id)
        )

    async def _user_public(self, conn: asyncpg.Connection, row: store.Row) -> dict[str, Any]:
        return views.user_public(row, await store.user_team_ids(conn, row["user_id"]))

    async def _require_team(
        self, conn: asyncpg.Connection, team_id: str, param: str = "team_id", lock: bool = False
    ) -> store.Row:
        row = await store.get_team(conn, team_id, lock=lock)
        if row is None:
            raise NotFoundError(f"team {team_id!r} does not exist", param)
        return row

    async def _require_key(self, conn: asyncpg.Connection, ref: str, param: str) -> store.Row:
        row = await store.lock_key(conn, rules.token_of(ref))
        if row is None:
            raise NotFoundError(
                f"key {rules.key_name(ref) if ref.startswith('sk-') else ref!r} does not exist",
                param,
            )
        return row

    # --- keys ------------------------------------------------------------------------------
    async def _key_values(
        self,
        conn: asyncpg.Connection,
        req: schemas.KeyFields,
        fields: set[str],
        existing: store.Row | None,
    ) -> dict[str, Any]:
        """Columns for the key fields the request set (validated against the database)."""
        now = _now()
        values: dict[str, Any] = {}
        if "duration" in fields:
            values["expires"] = rules.key_expiry(req.duration, now)
        if "budget_duration" in fields:
            rules.check_duration(req.budget_duration, "budget_duration", now)
            values["budget_duration"] = req.budget_duration
        if "team_id" in fields:
            if req.team_id is not None:
                await self._require_team(conn, req.team_id)
            values["team_id"] = req.team_id
        if "key_alias" in fields and req.key_alias is not None:
            other = await store.get_key_by_alias(conn, req.key_alias)
            if other is not None and (existing is None or other["token"] != existing["token"]):
                raise BadRequestError(
                    f"key_alias {req.key_alias!r} is already used by another key", "key_alias"
                )
        for name in ("key_alias", "user_id", "tpm_limit", "rpm_limit", "max_parallel_requests"):
            if name in fields:
                values[name] = getattr(req, name)
        if "models" in fields:
            values["models"] = list(req.models or [])
        if "max_budget" in fields:
            values["max_budget"] = _money(req.max_budget)
        if "metadata" in fields:
            values["metadata"] = rules.seal_secrets(dict(req.metadata or {}), self.sealer)
        if "blocked" in fields and req.blocked is not None:
            values["blocked"] = req.blocked
        return values

    async def generate_key(self, req: schemas.GenerateKeyRequest, actor: Actor) -> dict[str, Any]:
        if req.key is not None:
            rules.check_custom_key(req.key)
        plaintext = req.key or rules.new_key()
        token = hash_key(plaintext)
        async with self._unit(actor) as unit:
            if await store.get_key(unit.conn, token) is not None:
                raise BadRequestError("key: this key already exists", "key")
            fields = set(req.model_fields_set) - {"key"}
            values = await self._key_values(unit.conn, req, fields, None)
            values.update(
                key_name=rules.key_name(plaintext),
                created_by=actor.changed_by,
                updated_by=actor.changed_by,
            )
            row = await store.insert_key(unit.conn, token, values)
            public = views.key_public(row)
            unit.record("key", "created", token, None, views.audit_value(public))
            unit.put(names.KV_KEYS, token, views.key_state(row))
        return {
            **self._reset_at(public),
            "key": plaintext,
            "token_id": token,
            "duration": req.duration,
        }

    async def update_key(self, req: schemas.UpdateKeyRequest, actor: Actor) -> dict[str, Any]:
        async with self._unit(actor) as unit:
            before = await self._require_key(unit.conn, req.key, "key")
            fields = set(req.model_fields_set) - {"key"}
            values = await self._key_values(unit.conn, req, fields, before)
            row = before
            if values:
                values["updated_by"] = actor.changed_by
                updated = await store.update_key(unit.conn, before["token"], values)
                assert updated is not None
                row = updated
            public = views.key_public(row)
            unit.record(
                "key",
                "updated",
                row["token"],
                views.audit_value(views.key_public(before)),
                views.audit_diff(views.key_public(before), public),
            )
            unit.put(names.KV_KEYS, row["token"], views.key_state(row))
        return {**public, "key": req.key}

    async def _delete_key_rows(self, unit: Unit, rows: Sequence[store.Row]) -> None:
        for row in rows:
            unit.record(
                "key", "deleted", row["token"], views.audit_value(views.key_public(row)), None
            )
            unit.delete(names.KV_KEYS, row["token"])

    async def delete_keys(self, req: schemas.KeyRequest, actor: Actor) -> dict[str, Any]:
        async with self._unit(actor) as unit:
            if req.keys:
                tokens = list(dict.fromkeys(rules.token_of(k) for k in req.keys))
                rows = await store.delete_keys(unit.conn, tokens)
                missing = set(tokens) - {r["token"] for r in rows}
                if missing:
                    raise NotFoundError(
                        f"keys not found (nothing was deleted): {len(missing)} of {len(tokens)}",
                        "keys",
                    )
                deleted = list(req.keys)
            else:
                aliases = list(dict.fromkeys(req.key_aliases or []))
                found = [await store.get_key_by_alias(unit.conn, a) for a in aliases]
                missing_aliases = [a for a, r in zip(aliases, found, strict=True) if r is None]
                if missing_aliases:
                    raise NotFoundError(
                        f"key aliases not found (nothing was deleted): {missing_aliases[:10]}",
                        "key_aliases",
                    )
                rows = await store.delete_keys(unit.conn, [r["token"] for r in found if r])
                deleted = list(req.key_aliases or [])
            await self._delete_key_rows(unit, rows)
        return {"deleted_keys": deleted}

    async def regenerate_key(
        self, path_key: str | None, req: schemas.RegenerateKeyRequest | None, actor: Actor
    ) -> dict[str, Any]:
        req = req or schemas.RegenerateKeyRequest()
        ref = req.key or path_key
        if not ref:
            raise BadRequestError("key: which key to regenerate (path or body)", "key")
        if req.new_key is not None:
            rules.check_custom_key(req.new_key, "new_key")
        plaintext = req.new_key or rules.new_key()
        new_token = hash_key(plaintext)
        async with self._unit(actor) as unit:
            before = await self._require_key(unit.conn, ref, "key")
            if await store.get_key(unit.conn, new_token) is not None:
                raise BadRequestError("new_key: this key already exists", "new_key")
            fields = set(req.model_fields_set) - {"key", "new_key"}
            values = await self._key_values(unit.conn, req, fields, before)
            row = await store.replace_token(
                unit.conn, before["token"], new_token, rules.key_name(plaintext)
            )
            assert row is not None
            values["updated_by"] = actor.changed_by
            updated = await store.update_key(unit.conn, new_token, values)
            assert updated is not None
            row = updated
            public = views.key_public(row)
            old_public = views.key_public(before)
            unit.record(
                "key",
                "rotated",
                new_token,
                views.audit_value(old_public),
                {**views.audit_diff(old_public, public), "previous_token": before["token"]},
            )
            unit.delete(names.KV_KEYS, before["token"])
            unit.put(names.KV_KEYS, new_token, views.key_state(row))
        return {**public, "key": plaintext, "token_id": new_token}

    async def set_key_blocked(
        self, req: schemas.BlockKeyRequest, blocked: bool, actor: Actor
    ) -> dict[str, Any]:
        async with self._unit(actor) as unit:
            before = await self._require_key(unit.conn, req.key, "key")
            row = await store.update_key(
                unit.conn, before["token"], {"blocked": blocked, "updated_by": actor.changed_by}
            )
            assert row is not None
            unit.record(
                "key",
                "blocked" if blocked else "unblocked",
                row["token"],
                views.audit_value(views.key_public(before)),
                {"blocked": blocked},
            )
            unit.put(names.KV_KEYS, row["token"], views.key_state(row))
        return views.key_public(row)

    async def key_info(self, key: str | None, own_token: str | None) -> dict[str, Any]:
        token = rules.token_of(key) if key else own_token
        if token is None:
            raise BadRequestError(
                "key: required (the key or its hash) when using the master key", "key"
            )
        async with self._read() as conn:
            row = await store.get_key(conn, token)
        if row is None:
            raise NotFoundError("key does not exist", "key")
        spend = await self.kv.spend("key", token)
        return {"key": key or token, "info": self._reset_at(views.key_public(row, spend))}

    async def list_keys(
        self,
        *,
        page: int,
        size: int,
        user_id: str | None,
        team_id: str | None,
        key_alias: str | None,
        key_hash: str | None,
        return_full_object: bool,
    ) -> dict[str, Any]:
        async with self._read() as conn:
            rows, total = await store.list_keys(
                conn,
                page=page,
                size=size,
                user_id=user_id,
                team_id=team_id,
                key_alias=key_alias,
                key_hash=key_hash,
            )
        keys: list[Any] = (
            [self._reset_at(views.key_public(r)) for r in rows]
            if return_full_object
            else [r["token"] for r in rows]
        )
        return {
            "keys": keys,
            "total_count": total,
            "current_page": page,
            "total_pages": math.ceil(total / size),
        }

    # --- users (helpers shared with teams) -----------------------------------------------
    async def _ensure_user(self, unit: Unit, user_id: str | None, user_email: str | None) -> str:
        """The member's user id; creates the user (as LiteLLM does) when it does not exist."""
        if user_id is not None:
            if await store.get_user(unit.conn, user_id) is not None:
                return user_id
        elif user_email is not None:
            found = await store.users_by_email(unit.conn, user_email)
            if found:
                return str(found[0]["user_id"])
            user_id = _new_id()
        else:
            raise BadRequestError("either user_id or user_email must be provided", "user_id")
        row = await store.insert_user(
            unit.conn, user_id, {"user_email": user_email, "user_role": "internal_user"}
        )
        unit.record("user", "created", user_id, None, views.audit_value(views.user_public(row, [])))
        return user_id

    # --- teams ------------------------------------------------------------------------------
    def _team_values(self, req: schemas.TeamFields, fields: set[str]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if "budget_duration" in fields:
            rules.check_duration(req.budget_duration, "budget_duration", _now())
        for name in ("team_alias", "tpm_limit", "rpm_limit", "budget_duration"):
            if name in fields:
                values[name] = getattr(req, name)
        if "models" in fields:
            values["models"] = list(req.models or [])
        if "metadata" in fields:
            values["metadata"] = rules.seal_secrets(dict(req.metadata or {}), self.sealer)
        if "max_budget" in fields:
            values["max_budget"] = _money(req.max_budget)
        if "blocked" in fields and req.blocked is not None:
            values["blocked"] = req.blocked
        return values

    async def new_team(self, req: schemas.NewTeamRequest, actor: Actor) -> dict[str, Any]:
        team_id = req.team_id or _new_id()
        values = self._team_values(req, set(req.model_fields_set))
        async with self._unit(actor) as unit:
            if await store.get_team(unit.conn, team_id) is not None:
                raise BadRequestError(
                    f"team_id {team_id!r} already exists; use a different team id", "team_id"
                )
            await store.insert_team(unit.conn, team_id, values)
            user_ids: list[str] = []
            for member in req.members_with_roles:
                uid = await self._ensure_user(unit, member.user_id, member.user_email)
                await store.upsert_member(unit.conn, team_id, uid, member.user_email, member.role)
                user_ids.append(uid)
            row = await self._require_team(unit.conn, team_id)
            public = await self._team_public(unit.conn, row)
            unit.record("team", "created", team_id, None, views.audit_value(public))
            await self._refresh_team(unit, team_id)
            for uid in dict.fromkeys(user_ids):
                await self._refresh_user(unit, uid)
        return public

    async def update_team(self, req: schemas.UpdateTeamRequest, actor: Actor) -> dict[str, Any]:
        values = self._team_values(req, set(req.model_fields_set) - {"team_id"})
        async with self._unit(actor) as unit:
            before_row = await self._require_team(unit.conn, req.team_id, lock=True)
            before = await self._team_public(unit.conn, before_row)
            row = before_row
            if values:
                updated = await store.update_team(unit.conn, req.team_id, values)
                assert updated is not None
                row = updated
            public = await self._team_public(unit.conn, row)
            unit.record(
                "team",
                "updated",
                req.team_id,
                views.audit_value(before),
                views.audit_diff(before, public),
            )
            await self._refresh_team(unit, req.team_id)
        return {"team_id": req.team_id, "data": public}

    async def delete_teams(self, req: schemas.DeleteTeamRequest, actor: Actor) -> dict[str, Any]:
        team_ids = list(dict.fromkeys(req.team_ids))
        async with self._unit(actor) as unit:
            for team_id in team_ids:
                row = await self._require_team(unit.conn, team_id, "team_ids", lock=True)
                before = await self._team_public(unit.conn, row)
                member_ids = [m["user_id"] for m in await store.members(unit.conn, team_id)]
                # As LiteLLM: deleting a team deletes its keys.
                keys = await store.keys_where(unit.conn, team_id=team_id)
                await self._delete_key_rows(
                    unit, await store.delete_keys(unit.conn, [k["token"] for k in keys])
                )
                await store.delete_team(unit.conn, team_id)
                unit.record("team", "deleted", team_id, views.audit_value(before), None)
                unit.delete(names.KV_TEAMS, team_id)
                for uid in member_ids:
                    await self._refresh_user(unit, uid)
        return {"deleted_teams": team_ids}

    async def add_members(self, req: schemas.TeamMemberAddRequest, actor: Actor) -> dict[str, Any]:
        new_members = req.member if isinstance(req.member, list) else [req.member]
        async with self._unit(actor) as unit:
            row = await self._require_team(unit.conn, req.team_id, lock=True)
            before = await self._team_public(unit.conn, row)
            existing = {m["user_id"] for m in await store.members(unit.conn, req.team_id)}
            added: list[str] = []
            for member in new_members:
                uid = await self._ensure_user(unit, member.user_id, member.user_email)
                if uid in existing or uid in added:
                    raise BadRequestError(
                        f"user {uid!r} is already in team {req.team_id!r}", "member"
                    )
                await store.upsert_member(
                    unit.conn, req.team_id, uid, member.user_email, member.role
                )
                added.append(uid)
            public = await self._team_public(unit.conn, row)
            unit.record(
                "team",
                "member_added",
                req.team_id,
                {"members_with_roles": before["members_with_roles"]},
                {"members_with_roles": public["members_with_roles"], "added_user_ids": added},
            )
            await self._refresh_team(unit, req.team_id)
            users: list[dict[str, Any]] = []
            for uid in added:
                await self._refresh_user(unit, uid)
                user_row = await store.get_user(unit.conn, uid)
                assert user_row is not None
                users.append(await self._user_public(unit.conn, user_row))
        return {**public, "updated_users": users, "updated_team_memberships": []}

    async def remove_member(
        self, req: schemas.TeamMemberDeleteRequest, actor: Actor
    ) -> dict[str, Any]:
        async with self._unit(actor) as unit:
            row = await self._require_team(unit.conn, req.team_id, lock=True)
            before = await self._team_public(unit.conn, row)
            current = await store.members(unit.conn, req.team_id)
            match = [
                m
                for m in current
                if (req.user_id is not None and m["user_id"] == req.user_id)
                or (req.user_id is None and m["user_email"] == req.user_email)
            ]
            if not match:
                raise BadRequestError(
                    "user not found in team", "user_id" if req.user_id is not None else "user_email"
                )
            for m in match:
                await store.remove_member(unit.conn, req.team_id, m["user_id"])
            public = await self._team_public(unit.conn, row)
            unit.record(
                "team",
                "member_removed",
                req.team_id,
                {"members_with_roles": before["members_with_roles"]},
                {
                    "members_with_roles": public["members_with_roles"],
                    "removed_user_ids": [m["user_id"] for m in match],
                },
            )
            await self._refresh_team(unit, req.team_id)
            for m in match:
                await self._refresh_user(unit, m["user_id"])
        return public

    async def team_info(self, team_id: str) -> dict[str, Any]:
        async with self._read() as conn:
            row = await self._require_team(conn, team_id)
            public = await self._team_public(conn, row)
            keys = [views.key_public(k) for k in await store.keys_where(conn, team_id=team_id)]
        public["spend"] = await self.kv.spend("team", team_id)
        self._reset_at(public)
        memberships = [
            {"team_id": team_id, "user_id": m["user_id"], "spend": 0.0, "budget_id": None}
            for m in public["members_with_roles"]
        ]
        return {
            "team_id": team_id,
            "team_info": public,
            "keys": keys,
            "team_memberships": memberships,
        }

    async def list_teams(self, user_id: str | None) -> list[dict[str, Any]]:
        async with self._read() as conn:
            return [await self._team_public(conn, r) for r in await store.list_teams(conn, user_id)]

    # --- team logging -------------------------------------------------------------------
    async def add_callback(
        self, team_id: str, req: schemas.AddTeamCallback, actor: Actor
    ) -> dict[str, Any]:
        rules.check_id(team_id, "team_id")
        async with self._unit(actor) as unit:
            row = await self._require_team(unit.conn, team_id, lock=True)
            before = [views.callback_public(c) for c in await store.callbacks(unit.conn, team_id)]
            added = await store.add_callback(
                unit.conn,
                team_id,
                req.callback_name,
                req.callback_type,
                rules.seal_secrets(req.callback_vars, self.sealer),
            )
            if not added:
                raise BadRequestError(
                    f"callback_name = {req.callback_name} already exists for team_id = "
                    f"{team_id} and event = {req.callback_type}",
                    "callback_name",
                )
            if row["logging_disabled"]:
                updated = await store.update_team(unit.conn, team_id, {"logging_disabled": False})
                assert updated is not None
                row = updated
            after = [views.callback_public(c) for c in await store.callbacks(unit.conn, team_id)]
            unit.record(
                "team",
                "callback_added",
                team_id,
                {"logging": before},
                {"logging": after, "logging_disabled": False},
            )
            await self._refresh_team(unit, team_id)
            public = await self._team_public(unit.conn, row)
        return {"status": "success", "data": public}

    async def team_callbacks(self, team_id: str) -> dict[str, Any]:
        rules.check_id(team_id, "team_id")
        async with self._read() as conn:
            await self._require_team(conn, team_id)
            rows = await store.callbacks(conn, team_id)
        success = [
            c["callback_name"]
            for c in rows
            if c["callback_type"] in ("success", "success_and_failure")
        ]
        failure = [
            c["callback_name"]
            for c in rows
            if c["callback_type"] in ("failure", "success_and_failure")
        ]
        merged: dict[str, Any] = {}
        for c in rows:
            merged.update(rules.mask_callback_vars(c["callback_vars"] or {}))
        return {
            "status": "success",
            "data": {
                "team_id": team_id,
                "success_callbacks": list(dict.fromkeys(success)),
                "failure_callbacks": list(dict.fromkeys(failure)),
                "callback_vars": merged,
                "callbacks": [views.callback_public(c) for c in rows],
            },
        }

    async def disable_logging(self, team_id: str, actor: Actor) -> dict[str, Any]:
        rules.check_id(team_id, "team_id")
        async with self._unit(actor) as unit:
            await self._require_team(unit.conn, team_id, lock=True)
            before = [views.callback_public(c) for c in await store.callbacks(unit.conn, team_id)]
            await store.clear_callbacks(unit.conn, team_id)
            await store.update_team(unit.conn, team_id, {"logging_disabled": True})
            unit.record(
                "team",
                "logging_disabled",
                team_id,
                {"logging": before},
                {"logging": [], "logging_disabled": True},
            )
            await self._refresh_team(unit, team_id)
        return {
            "status": "success",
            "message": f"Logging disabled for team {team_id}",
            "data": {"team_id": team_id, "success_callbacks": [], "failure_callbacks": []},
        }

    # --- users -----------------------------------------------------------------------------
    def _user_values(self, req: schemas.UserFields, fields: set[str]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if "budget_duration" in fields:
            rules.check_duration(req.budget_duration, "budget_duration", _now())
        for name in (
            "user_email",
            "user_alias",
            "user_role",
            "tpm_limit",
            "rpm_limit",
            "budget_duration",
        ):
            if name in fields:
                values[name] = getattr(req, name)
        if "models" in fields:
            values["models"] = list(req.models or [])
        if "metadata" in fields:
            values["metadata"] = rules.seal_secrets(dict(req.metadata or {}), self.sealer)
        if "max_budget" in fields:
            values["max_budget"] = _money(req.max_budget)
        return values

    async def new_user(self, req: schemas.NewUserRequest, actor: Actor) -> dict[str, Any]:
        user_id = req.user_id or _new_id()
        fields = set(req.model_fields_set) - {
            "user_id",
            "teams",
            "auto_create_key",
            "key_alias",
            "duration",
        }
        values = self._user_values(req, fields)
        expires = rules.key_expiry(req.duration, _now()) if req.auto_create_key else None
        async with self._unit(actor) as unit:
            if await store.get_user(unit.conn, user_id) is not None:
                raise BadRequestError(f"user_id {user_id!r} already exists", "user_id")
            teams = list(dict.fromkeys(req.teams or []))
            for team_id in teams:
                await self._require_team(unit.conn, team_id, "teams")
            row = await store.insert_user(unit.conn, user_id, values)
            for team_id in teams:
                await store.upsert_member(unit.conn, team_id, user_id, req.user_email, "user")
            public = views.user_public(row, teams)
            unit.record("user", "created", user_id, None, views.audit_value(public))
            await self._refresh_user(unit, user_id)
            for team_id in teams:
                await self._refresh_team(unit, team_id)
            out: dict[str, Any] = {**public}
            if req.auto_create_key:
                if (
                    req.key_alias is not None
                    and await store.get_key_by_alias(unit.conn, req.key_alias) is not None
                ):
                    raise BadRequestError(
                        f"key_alias {req.key_alias!r} is already used", "key_alias"
                    )
                plaintext = rules.new_key()
                token = hash_key(plaintext)
                key_row = await store.insert_key(
                    unit.conn,
                    token,
                    {
                        "key_name": rules.key_name(plaintext),
                        "key_alias": req.key_alias,
                        "user_id": user_id,
                        "models": list(req.models or []),
                        "expires": expires,
                        "created_by": actor.changed_by,
                        "updated_by": actor.changed_by,
                    },
                )
                unit.record(
                    "key", "created", token, None, views.audit_value(views.key_public(key_row))
                )
                unit.put(names.KV_KEYS, token, views.key_state(key_row))
                out.update(
                    key=plaintext,
                    token_id=token,
                    key_name=key_row["key_name"],
                    key_alias=req.key_alias,
                    expires=expires,
                )
        return out

    async def _find_user(
        self, conn: asyncpg.Connection, user_id: str | None, user_email: str | None
    ) -> store.Row:
        if user_id is not None:
            row = await store.get_user(conn, user_id)
            if row is None:
                raise NotFoundError(f"user {user_id!r} does not exist", "user_id")
            return row
        assert user_email is not None
        found = await store.users_by_email(conn, user_email)
        if not found:
            raise NotFoundError("no user has this user_email", "user_email")
        return found[0]

    async def update_user(self, req: schemas.UpdateUserRequest, actor: Actor) -> dict[str, Any]:
        fields = set(req.model_fields_set) - {"user_id"}
        if req.user_id is None:
            fields.discard("user_email")  # it identifies the user here
        values = self._user_values(req, fields)
        async with self._unit(actor) as unit:
            before_row = await self._find_user(unit.conn, req.user_id, req.user_email)
            user_id = before_row["user_id"]
            before = await self._user_public(unit.conn, before_row)
            row = before_row
            if values:
                updated = await store.update_user(unit.conn, user_id, values)
                assert updated is not None
                row = updated
            public = await self._user_public(unit.conn, row)
            unit.record(
                "user",
                "updated",
                user_id,
                views.audit_value(before),
                views.audit_diff(before, public),
            )
            await self._refresh_user(unit, user_id)
        return {"user_id": user_id, "data": public}

    async def delete_users(self, req: schemas.DeleteUserRequest, actor: Actor) -> int:
        user_ids = list(dict.fromkeys(req.user_ids))
        async with self._unit(actor) as unit:
            for user_id in user_ids:
                row = await store.get_user(unit.conn, user_id)
                if row is None:
                    raise NotFoundError(
                        f"user {user_id!r} does not exist (nothing was deleted)", "user_ids"
                    )
                before = await self._user_public(unit.conn, row)
                # As LiteLLM: deleting a user deletes its keys.
                keys = await store.keys_where(unit.conn, user_id=user_id)
                await self._delete_key_rows(
                    unit, await store.delete_keys(unit.conn, [k["token"] for k in keys])
                )
                teams = await store.remove_member_everywhere(unit.conn, user_id)
                await store.delete_user(unit.conn, user_id)
                unit.record("user", "deleted", user_id, views.audit_value(before), None)
                unit.delete(names.KV_USERS, user_id)
                for team_id in teams:
                    await self._refresh_team(unit, team_id)
        return len(user_ids)

    async def user_info(self, user_id: str) -> dict[str, Any]:
        async with self._read() as conn:
            row = await self._find_user(conn, user_id, None)
            public = await self._user_public(conn, row)
            keys = [views.key_public(k) for k in await store.keys_where(conn, user_id=user_id)]
            teams = [
                await self._team_public(conn, t) for t in await store.list_teams(conn, user_id)
            ]
        public["spend"] = await self.kv.spend("user", user_id)
        self._reset_at(public)
        return {"user_id": user_id, "user_info": public, "keys": keys, "teams": teams}

    # --- models ----------------------------------------------------------------------------
    def _config_ids(self) -> set[str]:
        return {m.model_info.id for m in self.cfg.model_list if m.model_info.id}

    @staticmethod
    def _check_params(params: dict[str, Any]) -> None:
        rules.check_storable(params, "litellm_params")
        try:
            LitellmParams.model_validate(params)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in ("litellm_params", *first["loc"]))
            raise BadRequestError(f"{where}: {first['msg']}", where) from None

    async def new_model(self, req: schemas.NewModelRequest, actor: Actor) -> dict[str, Any]:
        info = req.model_info.model_dump(exclude_none=True) if req.model_info else {}
        model_id = str(info.pop("id", None) or _new_id())
        params = req.litellm_params.model_dump()
        self._check_params(params)
        rules.check_storable(info, "model_info")
        if model_id in self._config_ids():
            raise BadRequestError(
                f"model_info.id {model_id!r} is a config.yaml model", "model_info.id"
            )
        async with self._unit(actor) as unit:
            if await store.get_model(unit.conn, model_id) is not None:
                raise BadRequestError(f"model_info.id {model_id!r} already exists", "model_info.id")
            row = await store.insert_model(
                unit.conn,
                model_id,
                {
                    "model_name": req.model_name,
                    "litellm_params": rules.seal_secrets(params, self.sealer),
                    "model_info": info,
                    "created_by": actor.changed_by,
                    "updated_by": actor.changed_by,
                },
            )
            public = views.model_public(row)
            unit.record("model", "created", model_id, None, views.audit_value(public))
            unit.put(names.KV_MODELS, model_id, views.model_state(row))
        return {**public, "model_id": model_id, "created_at": row["created_at"]}

    async def _require_model(
        self, conn: asyncpg.Connection, model_id: str, param: str
    ) -> store.Row:
        row = await store.get_model(conn, model_id, lock=True)
        if row is None:
            if model_id in self._config_ids():
                raise BadRequestError(
                    f"model {model_id!r} is defined in config.yaml; edit the file", param
                )
            raise NotFoundError(f"model {model_id!r} does not exist", param)
        return row

    async def update_model(self, req: schemas.UpdateModelRequest, actor: Actor) -> dict[str, Any]:
        model_id = req.model_info.id
        async with self._unit(actor) as unit:
            before = await self._require_model(unit.conn, model_id, "model_info.id")
            values: dict[str, Any] = {"updated_by": actor.changed_by}
            if req.model_name is not None:
                values["model_name"] = req.model_name
            if req.litellm_params is not None:
                params = {**before["litellm_params"]}
                for k, v in req.litellm_params.items():
                    if v is None:
                        params.pop(k, None)
                    else:
                        params[k] = v
                self._check_params(params)
                values["litellm_params"] = rules.seal_secrets(params, self.sealer)
            extra_info = req.model_info.model_dump(exclude={"id"}, exclude_none=True)
            if extra_info:
                rules.check_storable(extra_info, "model_info")
                values["model_info"] = {**(before["model_info"] or {}), **extra_info}
            row = await store.update_model(unit.conn, model_id, values)
            assert row is not None
            old, public = views.model_public(before), views.model_public(row)
            unit.record(
                "model", "updated", model_id, views.audit_value(old), views.audit_diff(old, public)
            )
            unit.put(names.KV_MODELS, model_id, views.model_state(row))
        return {**public, "model_id": model_id, "created_at": row["created_at"]}

    async def delete_model(self, req: schemas.DeleteModelRequest, actor: Actor) -> dict[str, Any]:
        async with self._unit(actor) as unit:
            before = await self._require_model(unit.conn, req.id, "id")
            await store.delete_model(unit.conn, req.id)
            unit.record(
                "model", "deleted", req.id, views.audit_value(views.model_public(before)), None
            )
            unit.delete(names.KV_MODELS, req.id)
        return {"message": f"Model: {req.id} deleted successfully"}

    async def model_info(self, model_id: str | None) -> dict[str, Any]:
        entries = [views.config_model_public(m, i) for i, m in enumerate(self.cfg.model_list)]
        async with self._read() as conn:
            entries += [views.model_public(r) for r in await store.all_models(conn)]
        if model_id is not None:
            entries = [e for e in entries if e["model_info"].get("id") == model_id]
        return {"data": entries}
