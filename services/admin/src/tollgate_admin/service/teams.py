"""Teams, their members and their logging callbacks: create, update, delete, add and remove
members, add callbacks, disable logging; read one or list them."""

from __future__ import annotations

from typing import Any

from tollgate_admin import schemas, store, validation, views
from tollgate_admin.auth import Actor
from tollgate_admin.errors import BadRequestError
from tollgate_admin.masking import mask_callback_vars, seal_secrets
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
from tollgate_admin.service.keys import delete_key_rows
from tollgate_admin.service.users import ensure_user
from tollgate_shared import names
from tollgate_shared.names import AdminSubject


class TeamService(Area):
    def _team_values(self, req: schemas.TeamFields, fields: set[str]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if "budget_duration" in fields:
            validation.check_duration(req.budget_duration, "budget_duration", now())
        for name in ("team_alias", "tpm_limit", "rpm_limit", "budget_duration"):
            if name in fields:
                values[name] = getattr(req, name)
        if "models" in fields:
            values["models"] = list(req.models or [])
        if "metadata" in fields:
            values["metadata"] = seal_secrets(dict(req.metadata or {}), self.sealer)
        if "max_budget" in fields:
            values["max_budget"] = money(req.max_budget)
        if "blocked" in fields and req.blocked is not None:
            values["blocked"] = req.blocked
        return values

    async def new_team(self, req: schemas.NewTeamRequest, actor: Actor) -> dict[str, Any]:
        team_id = req.team_id or new_id()
        values = self._team_values(req, set(req.model_fields_set))
        async with self.uow.write(actor) as unit:
            if await store.get_team(unit.conn, team_id) is not None:
                raise BadRequestError(
                    f"team_id {team_id!r} already exists; use a different team id", "team_id"
                )
            await store.insert_team(unit.conn, team_id, values)
            user_ids: list[str] = []
            for member in req.members_with_roles:
                uid = await ensure_user(unit, member.user_id, member.user_email)
                await store.upsert_member(unit.conn, team_id, uid, member.user_email, member.role)
                user_ids.append(uid)
            row = await require_team(unit.conn, team_id)
            public = await team_public(unit.conn, row)
            unit.record(AdminSubject.TEAM_CREATED, team_id, None, views.audit_value(public))
            await refresh_team(unit, team_id)
            for uid in dict.fromkeys(user_ids):
                await refresh_user(unit, uid)
        return public

    async def update_team(self, req: schemas.UpdateTeamRequest, actor: Actor) -> dict[str, Any]:
        values = self._team_values(req, set(req.model_fields_set) - {"team_id"})
        async with self.uow.write(actor) as unit:
            before_row = await require_team(unit.conn, req.team_id, lock=True)
            before = await team_public(unit.conn, before_row)
            row = before_row
            if values:
                updated = await store.update_team(unit.conn, req.team_id, values)
                assert updated is not None
                row = updated
            public = await team_public(unit.conn, row)
            unit.record(
                AdminSubject.TEAM_UPDATED,
                req.team_id,
                views.audit_value(before),
                views.audit_diff(before, public),
            )
            await refresh_team(unit, req.team_id)
        return {"team_id": req.team_id, "data": public}

    async def delete_teams(self, req: schemas.DeleteTeamRequest, actor: Actor) -> dict[str, Any]:
        team_ids = list(dict.fromkeys(req.team_ids))
        async with self.uow.write(actor) as unit:
            for team_id in team_ids:
                row = await require_team(unit.conn, team_id, "team_ids", lock=True)
                before = await team_public(unit.conn, row)
                member_ids = [m["user_id"] for m in await store.members(unit.conn, team_id)]
                # As LiteLLM: deleting a team deletes its keys.
                keys = await store.keys_where(unit.conn, team_id=team_id)
                await delete_key_rows(
                    unit, await store.delete_keys(unit.conn, [k["token"] for k in keys])
                )
                await store.delete_team(unit.conn, team_id)
                unit.record(AdminSubject.TEAM_DELETED, team_id, views.audit_value(before), None)
                unit.delete(names.KV_TEAMS, team_id)
                for uid in member_ids:
                    await refresh_user(unit, uid)
        return {"deleted_teams": team_ids}

    async def add_members(self, req: schemas.TeamMemberAddRequest, actor: Actor) -> dict[str, Any]:
        new_members = req.member if isinstance(req.member, list) else [req.member]
        async with self.uow.write(actor) as unit:
            row = await require_team(unit.conn, req.team_id, lock=True)
            before = await team_public(unit.conn, row)
            existing = {m["user_id"] for m in await store.members(unit.conn, req.team_id)}
            added: list[str] = []
            for member in new_members:
                uid = await ensure_user(unit, member.user_id, member.user_email)
                if uid in existing or uid in added:
                    raise BadRequestError(
                        f"user {uid!r} is already in team {req.team_id!r}", "member"
                    )
                await store.upsert_member(
                    unit.conn, req.team_id, uid, member.user_email, member.role
                )
                added.append(uid)
            public = await team_public(unit.conn, row)
            unit.record(
                AdminSubject.TEAM_MEMBER_ADDED,
                req.team_id,
                {"members_with_roles": before["members_with_roles"]},
                {"members_with_roles": public["members_with_roles"], "added_user_ids": added},
            )
            await refresh_team(unit, req.team_id)
            users: list[dict[str, Any]] = []
            for uid in added:
                await refresh_user(unit, uid)
                user_row = await store.get_user(unit.conn, uid)
                assert user_row is not None
                users.append(await user_public(unit.conn, user_row))
        return {**public, "updated_users": users, "updated_team_memberships": []}

    async def remove_member(
        self, req: schemas.TeamMemberDeleteRequest, actor: Actor
    ) -> dict[str, Any]:
        async with self.uow.write(actor) as unit:
            row = await require_team(unit.conn, req.team_id, lock=True)
            before = await team_public(unit.conn, row)
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
            public = await team_public(unit.conn, row)
            unit.record(
                AdminSubject.TEAM_MEMBER_REMOVED,
                req.team_id,
                {"members_with_roles": before["members_with_roles"]},
                {
                    "members_with_roles": public["members_with_roles"],
                    "removed_user_ids": [m["user_id"] for m in match],
                },
            )
            await refresh_team(unit, req.team_id)
            for m in match:
                await refresh_user(unit, m["user_id"])
        return public

    async def team_info(self, team_id: str) -> dict[str, Any]:
        async with self.uow.read() as conn:
            row = await require_team(conn, team_id)
            public = await team_public(conn, row)
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
        async with self.uow.read() as conn:
            return [await team_public(conn, r) for r in await store.list_teams(conn, user_id)]

    # --- team logging -------------------------------------------------------------------
    async def add_callback(
        self, team_id: str, req: schemas.AddTeamCallback, actor: Actor
    ) -> dict[str, Any]:
        validation.check_id(team_id, "team_id")
        async with self.uow.write(actor) as unit:
            row = await require_team(unit.conn, team_id, lock=True)
            before = [views.callback_public(c) for c in await store.callbacks(unit.conn, team_id)]
            added = await store.add_callback(
                unit.conn,
                team_id,
                req.callback_name,
                req.callback_type,
                seal_secrets(req.callback_vars, self.sealer),
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
                AdminSubject.TEAM_CALLBACK_ADDED,
                team_id,
                {"logging": before},
                {"logging": after, "logging_disabled": False},
            )
            await refresh_team(unit, team_id)
            public = await team_public(unit.conn, row)
        return {"status": "success", "data": public}

    async def team_callbacks(self, team_id: str) -> dict[str, Any]:
        validation.check_id(team_id, "team_id")
        async with self.uow.read() as conn:
            await require_team(conn, team_id)
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
            merged.update(mask_callback_vars(c["callback_vars"] or {}))
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
        validation.check_id(team_id, "team_id")
        async with self.uow.write(actor) as unit:
            await require_team(unit.conn, team_id, lock=True)
            before = [views.callback_public(c) for c in await store.callbacks(unit.conn, team_id)]
            await store.clear_callbacks(unit.conn, team_id)
            await store.update_team(unit.conn, team_id, {"logging_disabled": True})
            unit.record(
                AdminSubject.TEAM_LOGGING_DISABLED,
                team_id,
                {"logging": before},
                {"logging": [], "logging_disabled": True},
            )
            await refresh_team(unit, team_id)
        return {
            "status": "success",
            "message": f"Logging disabled for team {team_id}",
            "data": {"team_id": team_id, "success_callbacks": [], "failure_callbacks": []},
        }
