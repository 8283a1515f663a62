"""Internal users: LiteLLM's /user/* endpoints."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.params import JSONBody, QueryParameter

from tollgate_admin import schemas
from tollgate_admin.routes.deps import ERRORS, ActorDep, CallerDep, ServiceDep
from tollgate_shared import names


class UserController(Controller):
    path = "/user"
    tags = ["internal user management"]

    @post("/new", operation_id="user_new", responses=ERRORS, status_code=200)
    async def new(
        self, data: JSONBody[schemas.NewUserRequest], service: ServiceDep, actor: ActorDep
    ) -> schemas.NewUserResponse:
        """Create a user (and, unless `auto_create_key` is false, a key for it, shown once)."""
        return schemas.NewUserResponse.model_validate(await service.new_user(data, actor))

    @post("/update", operation_id="user_update", responses=ERRORS, status_code=200)
    async def update(
        self, data: JSONBody[schemas.UpdateUserRequest], service: ServiceDep, actor: ActorDep
    ) -> schemas.UserUpdateResponse:
        """Change the given fields of a user, named by user_id (or user_email)."""
        return schemas.UserUpdateResponse.model_validate(await service.update_user(data, actor))

    @post("/delete", operation_id="user_delete", responses=ERRORS, status_code=200)
    async def delete(
        self, data: JSONBody[schemas.DeleteUserRequest], service: ServiceDep, actor: ActorDep
    ) -> int:
        """Delete users and their keys; answers how many users were deleted (as LiteLLM)."""
        return await service.delete_users(data, actor)

    @get("/list", operation_id="user_list", responses=ERRORS)
    async def list_users(
        self,
        service: ServiceDep,
        admin: CallerDep,
        page: Annotated[int, QueryParameter(ge=1)] = 1,
        page_size: Annotated[int, QueryParameter(ge=1, le=100)] = 25,
        role: Annotated[str | None, QueryParameter(required=False)] = None,
        user_ids: Annotated[
            str | None, QueryParameter(required=False, description="comma-separated user ids")
        ] = None,
    ) -> schemas.UserListResponse:
        """Users, newest first, a page at a time (`role`, `user_ids` narrow it)."""
        ids = [u.strip() for u in user_ids.split(",") if u.strip()] if user_ids else None
        return schemas.UserListResponse.model_validate(
            await service.list_users(page, page_size, role, ids)
        )

    @get("/info", operation_id="user_info", responses=ERRORS)
    async def info(
        self,
        service: ServiceDep,
        admin: CallerDep,
        user_id: Annotated[str, QueryParameter(pattern=names.ID_PATTERN)],
    ) -> schemas.UserInfoResponse:
        """A user with its keys and teams."""
        return schemas.UserInfoResponse.model_validate(await service.user_info(user_id))
