"""Dependencies every management route shares: the service, and who is calling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.openapi import ResponseSpec
from litestar.params import HeaderParameter

from tollgate_admin.auth import Actor, Caller
from tollgate_admin.schemas import ErrorResponse
from tollgate_admin.service import AdminService
from tollgate_shared import names
from tollgate_shared.credentials import presented_key


@dataclass
class AdminContext:
    """What the routes need from the running app (set in the lifespan)."""

    service: AdminService | None = None


def context(state: State) -> AdminContext:
    ctx: AdminContext = state["admin"]
    return ctx


async def provide_caller(request: Request[Any, Any, Any], state: State) -> Caller:
    """Any valid key: the master key or a virtual key (which may only read itself)."""
    service = context(state).service
    assert service is not None
    return await service.authenticate(presented_key(request.headers.get))


async def provide_admin(caller: NamedDependency[Caller]) -> Caller:
    """The master key, required for everything but a key reading its own info."""
    caller.require_master()
    return caller


async def provide_actor(
    admin: NamedDependency[Caller],
    changed_by: Annotated[
        str | None,
        HeaderParameter(
            name=names.HDR_CHANGED_BY,
            required=False,
            max_length=256,
            description="who the change is made on behalf of (recorded in the audit log)",
        ),
    ] = None,
) -> Actor:
    return Actor(changed_by=admin.changed_by(changed_by), api_key_hash=admin.api_key_hash)


async def provide_service(state: State) -> AdminService:
    service = context(state).service
    assert service is not None
    return service


ServiceDep = NamedDependency[AdminService]
ActorDep = NamedDependency[Actor]
CallerDep = NamedDependency[Caller]

DEPENDENCIES = {
    "caller": Provide(provide_caller),
    "admin": Provide(provide_admin),
    "actor": Provide(provide_actor),
    "service": Provide(provide_service),
}


def _error(description: str) -> ResponseSpec:
    return ResponseSpec(ErrorResponse, description=description, generate_examples=False)


# Documented on every management route (they replace Litestar's default 400 schema).
ERRORS: dict[int, ResponseSpec] = {
    400: _error("bad input; `param` names the offending field"),
    401: _error("no key, or an unknown or expired key"),
    403: _error("a key that may not do this (only the master key manages)"),
    404: _error("the named key, team, user or model does not exist"),
    409: _error("a concurrent change took the same unique value"),
}
