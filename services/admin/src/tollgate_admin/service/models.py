"""Models added through the API (config.yaml's stay read-only): create, update, delete; list
both kinds."""

from __future__ import annotations

from typing import Any

import asyncpg
from pydantic import ValidationError

from tollgate_admin import schemas, store, validation, views
from tollgate_admin.auth import Actor
from tollgate_admin.errors import BadRequestError, NotFoundError
from tollgate_admin.masking import seal_secrets
from tollgate_admin.service.base import Area, new_id
from tollgate_shared import names
from tollgate_shared.config import LitellmParams
from tollgate_shared.names import AdminSubject


def check_params(params: dict[str, Any]) -> None:
    """Refuse `litellm_params` that config.yaml would refuse, naming the field."""
    validation.check_storable(params, "litellm_params")
    try:
        LitellmParams.model_validate(params)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in ("litellm_params", *first["loc"]))
        raise BadRequestError(f"{where}: {first['msg']}", where) from None


class ModelService(Area):
    def _config_ids(self) -> set[str]:
        return {m.model_info.id for m in self.cfg.model_list if m.model_info.id}

    async def new_model(self, req: schemas.NewModelRequest, actor: Actor) -> dict[str, Any]:
        info = req.model_info.model_dump(exclude_none=True) if req.model_info else {}
        model_id = str(info.pop("id", None) or new_id())
        params = req.litellm_params.model_dump()
        check_params(params)
        validation.check_storable(info, "model_info")
        if model_id in self._config_ids():
            raise BadRequestError(
                f"model_info.id {model_id!r} is a config.yaml model", "model_info.id"
            )
        async with self.uow.write(actor) as unit:
            if await store.get_model(unit.conn, model_id) is not None:
                raise BadRequestError(f"model_info.id {model_id!r} already exists", "model_info.id")
            row = await store.insert_model(
                unit.conn,
                model_id,
                {
                    "model_name": req.model_name,
                    "litellm_params": seal_secrets(params, self.sealer),
                    "model_info": info,
                    "created_by": actor.changed_by,
                    "updated_by": actor.changed_by,
                },
            )
            public = views.model_public(row)
            unit.record(AdminSubject.MODEL_CREATED, model_id, None, views.audit_value(public))
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
        async with self.uow.write(actor) as unit:
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
                check_params(params)
                values["litellm_params"] = seal_secrets(
                    params, self.sealer, before["litellm_params"]
                )
            extra_info = req.model_info.model_dump(exclude={"id"}, exclude_none=True)
            if extra_info:
                validation.check_storable(extra_info, "model_info")
                values["model_info"] = {**(before["model_info"] or {}), **extra_info}
            row = await store.update_model(unit.conn, model_id, values)
            assert row is not None
            old, public = views.model_public(before), views.model_public(row)
            unit.record(
                AdminSubject.MODEL_UPDATED,
                model_id,
                views.audit_value(old),
                views.audit_diff(old, public),
            )
            unit.put(names.KV_MODELS, model_id, views.model_state(row))
        return {**public, "model_id": model_id, "created_at": row["created_at"]}

    async def delete_model(self, req: schemas.DeleteModelRequest, actor: Actor) -> dict[str, Any]:
        async with self.uow.write(actor) as unit:
            before = await self._require_model(unit.conn, req.id, "id")
            await store.delete_model(unit.conn, req.id)
            unit.record(
                AdminSubject.MODEL_DELETED,
                req.id,
                views.audit_value(views.model_public(before)),
                None,
            )
            unit.delete(names.KV_MODELS, req.id)
        return {"message": f"Model: {req.id} deleted successfully"}

    async def model_info(self, model_id: str | None) -> dict[str, Any]:
        entries = [views.config_model_public(m, i) for i, m in enumerate(self.cfg.model_list)]
        async with self.uow.read() as conn:
            entries += [views.model_public(r) for r in await store.all_models(conn)]
        if model_id is not None:
            entries = [e for e in entries if e["model_info"].get("id") == model_id]
        return {"data": entries}
