"""Teams, their members and their logging callbacks: LiteLLM's /team/* endpoints."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.params import JSONBody, PathParameter, QueryParameter

from tollgate_admin import schemas
from tollgate_admin.routes.deps import ERRORS, ActorDep, CallerDep, ServiceDep
from tollgate_shared import names

TeamIdPath = Annotated[str, PathParameter(description="the team id", max_length=256)]


class TeamController(Controller):
    path = "/team"
    tags = ["team management"]

    @post("/new", operation_id="team_new", responses=ERRORS, status_code=200)
    async def new(
        self, data: JSONBody[schemas.NewTeamRequest], service: ServiceDep, actor: ActorDep
    ) -> schemas.TeamInfo:
        """Create a team (members are created as users when they do not exist yet)."""
        return schemas.TeamInfo.model_validate(await service.new_team(data, actor))

    @post("/update", operation_id="team_update", responses=ERRORS, status_code=200)
    async def update(
        self, data: JSONBody[schemas.UpdateTeamRequest], service: ServiceDep, actor: ActorDep
    ) -> schemas.TeamUpdateResponse:
        """Change the given fields of a team; members via /team/member_add and _delete."""
        return schemas.TeamUpdateResponse.model_validate(await service.update_team(data, actor))

    @post("/delete", operation_id="team_delete", responses=ERRORS, status_code=200)
    async def delete(
        self, data: JSONBody[schemas.DeleteTeamRequest], service: ServiceDep, actor: ActorDep
    ) -> schemas.TeamDeleteResponse:
        """Delete teams and their keys; all or nothing."""
        return schemas.TeamDeleteResponse.model_validate(await service.delete_teams(data, actor))

    @post("/member_add", operation_id="team_member_add", responses=ERRORS, status_code=200)
    async def member_add(
        self, data: JSONBody[schemas.TeamMemberAddRequest], service: ServiceDep, actor: ActorDep
    ) -> schemas.TeamInfo:
        """Add one member or a list (by user_id or user_email) with a role."""
        return schemas.TeamInfo.model_validate(await service.add_members(data, actor))

    @post("/member_delete", operation_id="team_member_delete", responses=ERRORS, status_code=200)
    async def member_delete(
        self, data: JSONBody[schemas.TeamMemberDeleteRequest], service: ServiceDep, actor: ActorDep
    ) -> schemas.TeamInfo:
        """Remove a member (by user_id or user_email) from a team."""
        return schemas.TeamInfo.model_validate(await service.remove_member(data, actor))

    @get("/info", operation_id="team_info", responses=ERRORS)
    async def info(
        self,
        service: ServiceDep,
        admin: CallerDep,
        team_id: Annotated[str, QueryParameter(pattern=names.ID_PATTERN)],
    ) -> schemas.TeamInfoResponse:
        """A team with its keys and memberships."""
        return schemas.TeamInfoResponse.model_validate(await service.team_info(team_id))

    @get("/list", operation_id="team_list", responses=ERRORS)
    async def list_teams(
        self,
        service: ServiceDep,
        admin: CallerDep,
        user_id: Annotated[
            str | None,
            QueryParameter(
                required=False,
                pattern=names.ID_PATTERN,
                description="only teams this user belongs to",
            ),
        ] = None,
    ) -> list[schemas.TeamInfo]:
        """All teams (or one user's), sorted by alias."""
        return [schemas.TeamInfo.model_validate(t) for t in await service.list_teams(user_id)]

    @post(
        "/{team_id:str}/callback",
        operation_id="team_callback_add",
        responses=ERRORS,
        status_code=200,
    )
    async def add_callback(
        self,
        team_id: TeamIdPath,
        data: JSONBody[schemas.AddTeamCallback],
        service: ServiceDep,
        actor: ActorDep,
    ) -> schemas.TeamCallbackAddResponse:
        """Send this team's logs to a destination (e.g. langfuse with its own keys).

        The same callback_name and callback_type twice is refused (400). Values may be
        `os.environ/NAME` references; secrets are never shown back unmasked.
        """
        return schemas.TeamCallbackAddResponse.model_validate(
            await service.add_callback(team_id, data, actor)
        )

    @get("/{team_id:str}/callback", operation_id="team_callback_get", responses=ERRORS)
    async def get_callbacks(
        self, team_id: TeamIdPath, service: ServiceDep, admin: CallerDep
    ) -> schemas.TeamCallbackResponse:
        """The team's success/failure callbacks and their variables (secrets masked)."""
        return schemas.TeamCallbackResponse.model_validate(await service.team_callbacks(team_id))

    @post(
        "/{team_id:str}/disable_logging",
        operation_id="team_disable_logging",
        responses=ERRORS,
        status_code=200,
    )
    async def disable_logging(
        self, team_id: TeamIdPath, service: ServiceDep, actor: ActorDep
    ) -> schemas.DisableLoggingResponse:
        """Turn off every logging callback of the team: nothing of it leaves Tollgate."""
        return schemas.DisableLoggingResponse.model_validate(
            await service.disable_logging(team_id, actor)
        )
