"""Assembles the admin service: PostgreSQL pool, NATS, KV state, outbox relay, routes, docs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
from litestar import Litestar, Request, Response
from litestar.datastructures import State
from nats.aio.client import Client as NATS

from tollgate_admin import store
from tollgate_admin.propagation import KvState, OutboxRelay
from tollgate_admin.routes import KeyController, ModelController, TeamController, UserController
from tollgate_admin.routes.deps import DEPENDENCIES, AdminContext
from tollgate_admin.routes.errors import EXCEPTION_HANDLERS
from tollgate_admin.routes.openapi import openapi_config
from tollgate_admin.service import AdminService
from tollgate_admin.settings import AdminSettings
from tollgate_admin.uow import UnitOfWork, db_error
from tollgate_shared import names
from tollgate_shared.config import TollgateConfig
from tollgate_shared.dependencies import check_nats, check_postgres
from tollgate_shared.migrate import apply_migrations
from tollgate_shared.publishing import connect_nats
from tollgate_shared.web import health_router

MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass
class Deps:
    nc: NATS | None = None
    pool: asyncpg.Pool | None = None


def _db_error(_: Request[Any, Any, Any], exc: asyncpg.PostgresError) -> Response[dict[str, Any]]:
    """A database refusal that escaped a unit of work, as the client's 4xx."""
    err = db_error(exc)
    return Response(err.body(), status_code=err.status)


def create_app(
    settings: AdminSettings,
    cfg: TollgateConfig,
    *,
    pool: asyncpg.Pool | None = None,
    nc: NATS | None = None,
) -> Litestar:
    """The admin app. A `pool` (made with `init=store.init_connection`) or `nc` passed in is
    used as it is and left open at stop; otherwise the lifespan opens one from `settings`
    (and closes it)."""
    deps = Deps()
    ctx = AdminContext()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        deps.pool = pool or await asyncpg.create_pool(
            settings.database_url, min_size=1, max_size=10, init=store.init_connection
        )
        async with deps.pool.acquire() as conn:
            await apply_migrations(conn, names.SCHEMA_ADMIN, MIGRATIONS)
        deps.nc = nc or await connect_nats(settings.nats_url, "tollgate-admin")
        js = deps.nc.jetstream()
        kv = KvState(js, prune=settings.kv_prune)
        await kv.open()
        # KV is derived state: rebuild it from PostgreSQL on every start.
        await kv.resync(deps.pool)
        relay = OutboxRelay(deps.pool, js)
        await relay.flush()
        await relay.start()
        ctx.service = AdminService(
            UnitOfWork(deps.pool, kv, relay),
            cfg,
            sealer=settings.sealer(cfg),
            master_key=settings.effective_master_key(cfg),
        )
        try:
            yield
        finally:
            await relay.stop()
            await kv.close()
            if nc is None:
                await deps.nc.drain()
            if pool is None:
                await deps.pool.close()

    checks = lambda: {  # noqa: E731
        "nats": partial(check_nats, deps.nc),
        "postgres": partial(check_postgres, deps.pool),
    }
    return Litestar(
        route_handlers=[
            health_router("admin", checks),
            KeyController,
            TeamController,
            UserController,
            ModelController,
        ],
        dependencies=DEPENDENCIES,
        lifespan=[lifespan],
        state=State({"admin": ctx}),
        openapi_config=openapi_config(),
        exception_handlers={**EXCEPTION_HANDLERS, asyncpg.PostgresError: _db_error},
    )
