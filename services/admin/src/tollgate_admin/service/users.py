"""Users: create (with a key unless asked not to), update, delete (with their keys); read one."""

from __future__ import annotations

from typing import Any

import asyncpg

from tollgate_admin import key_material, schemas, store, validation, views
from tollgate_admin.auth import Actor
from tollgate_admin.errors import BadRequestError, NotFoundError
from tollgate_admin.masking import seal_secrets
from tollgate_admin.service.base import (
    Area,
    money,
    new_id,
    now,
    refresh_team,
    refresh_user,
    require_team,
    team_public,
    user_public,
)
from tollgate_admin.service.keys import create_key, delete_key_rows
from tollgate_admin.uow import Unit
from tollgate_shared import names
from tollgate_shared.names import AdminSubject


async def ensure_user(unit: Unit, user_id: str | None, user_email: str | None) -> str:
    """The member's user id; creates the user (as LiteLLM does) when it does not exist."""
    if user_id is not None:
        if await store.get_user(unit.conn, user_id) is not None:
            return user_id
    elif user_email is not None:
        found = await store.users_by_email(unit.conn, user_email)
        if found:
            return str(found[0]["user_id"])
        user_id = new_id()
    else:
        raise BadRequestError("either user_id or user_email must be provided", "user_id")
    row = await store.insert_user(
        unit.conn, user_id, {"user_email": user_email, "user_role": "internal_user"}
    )
    unit.record(
        AdminSubject.USER_CREATED, user_id, None, views.audit_value(views.user_public(row, []))
    )
    return user_id


async def find_user(
    conn: asyncpg.Connection, user_id: str | None, user_email: str | None
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


class UserService(Area):
    def _user_values(self, req: schemas.UserFields, fields: set[str]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if "budget_duration" in fields:
            validation.check_duration(req.budget_duration, "budget_duration", now())
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
            values["metadata"] = seal_secrets(dict(req.metadata or {}), self.sealer)
        if "max_budget" in fields:
            values["max_budget"] = money(req.max_budget)
        return values

    async def new_user(self, req: schemas.NewUserRequest, actor: Actor) -> dict[str, Any]:
        user_id = req.user_id or new_id()
        fields = set(req.model_fields_set) - {
            "user_id",
            "teams",
            "auto_create_key",
            "key_alias",
            "duration",
        }
        values = self._user_values(req, fields)
        expires = validation.key_expiry(req.duration, now()) if req.auto_create_key else None
        async with self.uow.write(actor) as unit:
            if await store.get_user(unit.conn, user_id) is not None:
                raise BadRequestError(f"user_id {user_id!r} already exists", "user_id")
            teams = list(dict.fromkeys(req.teams or []))
            for team_id in teams:
                await require_team(unit.conn, team_id, "teams")
            row = await store.insert_user(unit.conn, user_id, values)
            for team_id in teams:
                await store.upsert_member(unit.conn, team_id, user_id, req.user_email, "user")
            public = views.user_public(row, teams)
            unit.record(AdminSubject.USER_CREATED, user_id, None, views.audit_value(public))
            await refresh_user(unit, user_id)
            for team_id in teams:
                await refresh_team(unit, team_id)
            out: dict[str, Any] = {**public}
            if req.auto_create_key:
                if (
                    req.key_alias is not None
                    and await store.get_key_by_alias(unit.conn, req.key_alias) is not None
                ):
                    raise BadRequestError(
                        f"key_alias {req.key_alias!r} is already used", "key_alias"
                    )
                plaintext = key_material.new_key()
                key_row = await create_key(
                    unit,
                    plaintext,
                    {
                        "key_alias": req.key_alias,
                        "user_id": user_id,
                        "models": list(req.models or []),
                        "expires": expires,
                    },
                )
                out.update(
                    key=plaintext,
                    token_id=key_row["token"],
                    key_name=key_row["key_name"],
                    key_alias=req.key_alias,
                    expires=expires,
                )
        return out

    async def update_user(self, req: schemas.UpdateUserRequest, actor: Actor) -> dict[str, Any]:
        fields = set(req.model_fields_set) - {"user_id"}
        if req.user_id is None:
            fields.discard("user_email")  # it identifies the user here
        values = self._user_values(req, fields)
        async with self.uow.write(actor) as unit:
            before_row = await find_user(unit.conn, req.user_id, req.user_email)
            user_id = before_row["user_id"]
            before = await user_public(unit.conn, before_row)
            row = before_row
            if values:
                updated = await store.update_user(unit.conn, user_id, values)
                assert updated is not None
                row = updated
            public = await user_public(unit.conn, row)
            unit.record(
                AdminSubject.USER_UPDATED,
                user_id,
                views.audit_value(before),
                views.audit_diff(before, public),
            )
            await refresh_user(unit, user_id)
        return {"user_id": user_id, "data": public}

    async def delete_users(self, req: schemas.DeleteUserRequest, actor: Actor) -> int:
        user_ids = list(dict.fromkeys(req.user_ids))
        async with self.uow.write(actor) as unit:
            for user_id in user_ids:
                row = await store.get_user(unit.conn, user_id)
                if row is None:
                    raise NotFoundError(
                        f"user {user_id!r} does not exist (nothing was deleted)", "user_ids"
                    )
                before = await user_public(unit.conn, row)
                # As LiteLLM: deleting a user deletes its keys.
                keys = await store.keys_where(unit.conn, user_id=user_id)
                await delete_key_rows(
                    unit, await store.delete_keys(unit.conn, [k["token"] for k in keys])
                )
                teams = await store.remove_member_everywhere(unit.conn, user_id)
                await store.delete_user(unit.conn, user_id)
                unit.record(AdminSubject.USER_DELETED, user_id, views.audit_value(before), None)
                unit.delete(names.KV_USERS, user_id)
                for team_id in teams:
                    await refresh_team(unit, team_id)
        return len(user_ids)

    async def list_users(
        self, page: int, page_size: int, role: str | None, user_ids: list[str] | None
    ) -> dict[str, Any]:
        """LiteLLM's /user/list page: `{users, total, page, page_size, total_pages}`."""
        async with self.uow.read() as conn:
            rows, total = await store.list_users(
                conn, page=page, size=page_size, role=role, user_ids=user_ids
            )
            users = [await user_public(conn, r) for r in rows]
        for u in users:
            u["spend"] = await self.kv.spend("user", u["user_id"])
            self._reset_at(u)
        return {
            "users": users,
            "total": total,
            "page": page,
            "page_size": page_size,
            "total_pages": -(-total // page_size),
        }

    async def user_info(self, user_id: str) -> dict[str, Any]:
        async with self.uow.read() as conn:
            row = await find_user(conn, user_id, None)
            public = await user_public(conn, row)
            keys = [views.key_public(k) for k in await store.keys_where(conn, user_id=user_id)]
            teams = [await team_public(conn, t) for t in await store.list_teams(conn, user_id)]
        public["spend"] = await self.kv.spend("user", user_id)
        self._reset_at(public)
        return {"user_id": user_id, "user_info": public, "keys": keys, "teams": teams}
