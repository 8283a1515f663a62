"""Assembles the admin service: its NATS connection and PostgreSQL pool, health and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

import asyncpg
from litestar import Litestar
from nats.aio.client import Client as NATS
from tollgate_shared.config import TollgateConfig
from tollgate_shared.dependencies import check_nats, check_postgres
from tollgate_shared.publishing import connect_nats
from tollgate_shared.web import health_router

from tollgate_admin.settings import AdminSettings


@dataclass
class Deps:
    nc: NATS | None = None
    pool: asyncpg.Pool | None = None


def create_app(settings: AdminSettings, cfg: TollgateConfig) -> Litestar:
    deps = Deps()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        deps.nc = await connect_nats(settings.nats_url, "tollgate-admin")
        deps.pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=5)
        try:
            yield
        finally:
            await deps.pool.close()
            await deps.nc.drain()

    checks = lambda: {  # noqa: E731
        "nats": partial(check_nats, deps.nc),
        "postgres": partial(check_postgres, deps.pool),
    }
    return Litestar(route_handlers=[health_router("admin", checks)], lifespan=[lifespan])
