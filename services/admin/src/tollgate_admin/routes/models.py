"""Deployments added at run time: LiteLLM's /model/* endpoints."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.params import JSONBody, QueryParameter

from tollgate_admin import schemas
from tollgate_admin.routes.deps import ERRORS, ActorDep, CallerDep, ServiceDep
from tollgate_shared import names


class ModelController(Controller):
    path = "/model"
    tags = ["model management"]

    @post("/new", operation_id="model_new", responses=ERRORS, status_code=200)
    async def new(
        self, data: JSONBody[schemas.NewModelRequest], service: ServiceDep, actor: ActorDep
    ) -> schemas.ModelEntry:
        """Add a deployment; ingress routes to it within a second, without a restart."""
        return schemas.ModelEntry.model_validate(await service.new_model(data, actor))

    @post("/update", operation_id="model_update", responses=ERRORS, status_code=200)
    async def update(
        self, data: JSONBody[schemas.UpdateModelRequest], service: ServiceDep, actor: ActorDep
    ) -> schemas.ModelEntry:
        """Change a deployment named by `model_info.id`; given litellm_params are merged."""
        return schemas.ModelEntry.model_validate(await service.update_model(data, actor))

    @post("/delete", operation_id="model_delete", responses=ERRORS, status_code=200)
    async def delete(
        self, data: JSONBody[schemas.DeleteModelRequest], service: ServiceDep, actor: ActorDep
    ) -> schemas.ModelDeleteResponse:
        """Remove a deployment added through the API."""
        return schemas.ModelDeleteResponse.model_validate(await service.delete_model(data, actor))

    @get("/info", operation_id="model_info", responses=ERRORS)
    async def info(
        self,
        service: ServiceDep,
        admin: CallerDep,
        litellm_model_id: Annotated[
            str | None,
            QueryParameter(
                required=False, pattern=names.ID_PATTERN, description="only this deployment"
            ),
        ] = None,
    ) -> schemas.ModelInfoResponse:
        """Every deployment (config.yaml and API-added), credentials masked."""
        return schemas.ModelInfoResponse.model_validate(await service.model_info(litellm_model_id))
