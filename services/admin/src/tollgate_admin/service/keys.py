"""Virtual keys: generate, update, delete, regenerate (rotate), block and unblock; read one or
list them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import asyncpg

from tollgate_admin import key_material, schemas, store, validation, views
from tollgate_admin.auth import Actor
from tollgate_admin.errors import BadRequestError, NotFoundError
from tollgate_admin.masking import seal_secrets
from tollgate_admin.service.base import Area, money, now, require_key, require_team
from tollgate_admin.uow import Unit
from tollgate_shared import names
from tollgate_shared.names import AdminSubject
from tollgate_shared.state import hash_key


async def create_key(unit: Unit, plaintext: str, values: dict[str, Any]) -> store.Row:
    """Store a new key (its hash only) with `values`; queue its event and its KV entry."""
    token = hash_key(plaintext)
    row = await store.insert_key(
        unit.conn,
        token,
        {
            **values,
            "key_name": key_material.key_name(plaintext),
            "created_by": unit.actor.changed_by,
            "updated_by": unit.actor.changed_by,
        },
    )
    unit.record(AdminSubject.KEY_CREATED, token, None, views.audit_value(views.key_public(row)))
    unit.put(names.KV_KEYS, token, views.key_state(row))
    return row


async def delete_key_rows(unit: Unit, rows: Sequence[store.Row]) -> None:
    """Queue the events and KV deletes of keys already deleted in this unit."""
    for row in rows:
        unit.record(
            AdminSubject.KEY_DELETED,
            row["token"],
            views.audit_value(views.key_public(row)),
            None,
        )
        unit.delete(names.KV_KEYS, row["token"])


class KeyService(Area):
    async def _key_values(
        self,
        conn: asyncpg.Connection,
        req: schemas.KeyFields,
        fields: set[str],
        existing: store.Row | None,
    ) -> dict[str, Any]:
        """Columns for the key fields the request set (validated against the database)."""
        start = now()
        values: dict[str, Any] = {}
        if "duration" in fields:
            values["expires"] = validation.key_expiry(req.duration, start)
        if "budget_duration" in fields:
            validation.check_duration(req.budget_duration, "budget_duration", start)
            values["budget_duration"] = req.budget_duration
        if "team_id" in fields:
            if req.team_id is not None:
                await require_team(conn, req.team_id)
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
            values["max_budget"] = money(req.max_budget)
        if "metadata" in fields:
            values["metadata"] = seal_secrets(
                dict(req.metadata or {}), self.sealer, existing["metadata"] if existing else None
            )
        if "blocked" in fields and req.blocked is not None:
            values["blocked"] = req.blocked
        return values

    async def generate_key(self, req: schemas.GenerateKeyRequest, actor: Actor) -> dict[str, Any]:
        if req.key is not None:
            key_material.check_custom_key(req.key)
        plaintext = req.key or key_material.new_key()
        token = hash_key(plaintext)
        async with self.uow.write(actor) as unit:
            if await store.get_key(unit.conn, token) is not None:
                raise BadRequestError("key: this key already exists", "key")
            fields = set(req.model_fields_set) - {"key"}
            values = await self._key_values(unit.conn, req, fields, None)
            row = await create_key(unit, plaintext, values)
            public = views.key_public(row)
        return {
            **self._reset_at(public),
            "key": plaintext,
            "token_id": token,
            "duration": req.duration,
        }

    async def update_key(self, req: schemas.UpdateKeyRequest, actor: Actor) -> dict[str, Any]:
        async with self.uow.write(actor) as unit:
            before = await require_key(unit.conn, req.key, "key")
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
                AdminSubject.KEY_UPDATED,
                row["token"],
                views.audit_value(views.key_public(before)),
                views.audit_diff(views.key_public(before), public),
            )
            unit.put(names.KV_KEYS, row["token"], views.key_state(row))
        return {**public, "key": req.key}

    async def delete_keys(self, req: schemas.KeyRequest, actor: Actor) -> dict[str, Any]:
        async with self.uow.write(actor) as unit:
            if req.keys:
                tokens = list(dict.fromkeys(key_material.token_of(k) for k in req.keys))
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
            await delete_key_rows(unit, rows)
        return {"deleted_keys": deleted}

    async def regenerate_key(
        self, path_key: str | None, req: schemas.RegenerateKeyRequest | None, actor: Actor
    ) -> dict[str, Any]:
        req = req or schemas.RegenerateKeyRequest()
        ref = req.key or path_key
        if not ref:
            raise BadRequestError("key: which key to regenerate (path or body)", "key")
        if req.new_key is not None:
            key_material.check_custom_key(req.new_key, "new_key")
        plaintext = req.new_key or key_material.new_key()
        new_token = hash_key(plaintext)
        async with self.uow.write(actor) as unit:
            before = await require_key(unit.conn, ref, "key")
            if await store.get_key(unit.conn, new_token) is not None:
                raise BadRequestError("new_key: this key already exists", "new_key")
            fields = set(req.model_fields_set) - {"key", "new_key"}
            values = await self._key_values(unit.conn, req, fields, before)
            row = await store.replace_token(
                unit.conn, before["token"], new_token, key_material.key_name(plaintext)
            )
            assert row is not None
            values["updated_by"] = actor.changed_by
            updated = await store.update_key(unit.conn, new_token, values)
            assert updated is not None
            row = updated
            public = views.key_public(row)
            old_public = views.key_public(before)
            unit.record(
                AdminSubject.KEY_ROTATED,
                new_token,
                views.audit_value(old_public),
                {**views.audit_diff(old_public, public), "previous_token": before["token"]},
            )
            unit.delete(names.KV_KEYS, before["token"])
            unit.put(names.KV_KEYS, new_token, views.key_state(row))
        # The same key under a new secret: its spend carries over (the ledger moves it).
        spend = await self.kv.spend("key", before["token"])
        return {**public, "spend": spend, "key": plaintext, "token_id": new_token}

    async def set_key_blocked(
        self, req: schemas.BlockKeyRequest, blocked: bool, actor: Actor
    ) -> dict[str, Any]:
        async with self.uow.write(actor) as unit:
            before = await require_key(unit.conn, req.key, "key")
            row = await store.update_key(
                unit.conn, before["token"], {"blocked": blocked, "updated_by": actor.changed_by}
            )
            assert row is not None
            unit.record(
                AdminSubject.KEY_BLOCKED if blocked else AdminSubject.KEY_UNBLOCKED,
                row["token"],
                views.audit_value(views.key_public(before)),
                {"blocked": blocked},
            )
            unit.put(names.KV_KEYS, row["token"], views.key_state(row))
        return views.key_public(row)

    async def key_info(self, key: str | None, own_token: str | None) -> dict[str, Any]:
        token = key_material.token_of(key) if key else own_token
        if token is None:
            raise BadRequestError(
                "key: required (the key or its hash) when using the master key", "key"
            )
        async with self.uow.read() as conn:
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
        async with self.uow.read() as conn:
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
