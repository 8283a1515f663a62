"""Assembles the alerter: its NATS and Redis connections, health and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import redis.asyncio as aioredis
from litestar import Litestar
from nats.aio.client import Client as NATS
from tollgate_shared.config import TollgateConfig
from tollgate_shared.dependencies import check_nats, check_redis
from tollgate_shared.publishing import connect_nats
from tollgate_shared.web import health_router

from tollgate_alerter.settings import AlerterSettings


@dataclass
class Deps:
    nc: NATS | None = None
    redis: Any = None


def create_app(settings: AlerterSettings, cfg: TollgateConfig) -> Litestar:
    deps = Deps()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        deps.nc = await connect_nats(settings.nats_url, "tollgate-alerter")
        deps.redis = aioredis.from_url(settings.redis_url)
        try:
            yield
        finally:
            await deps.redis.aclose()
            await deps.nc.drain()

    checks = lambda: {  # noqa: E731
        "nats": partial(check_nats, deps.nc),
        "redis": partial(check_redis, deps.redis),
    }
    return Litestar(route_handlers=[health_router("alerter", checks)], lifespan=[lifespan])
