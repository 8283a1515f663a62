"""Assembles the exporter: its NATS connection, health and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

from litestar import Litestar
from nats.aio.client import Client as NATS
from tollgate_shared.config import TollgateConfig
from tollgate_shared.dependencies import check_nats
from tollgate_shared.publishing import connect_nats
from tollgate_shared.web import health_router

from tollgate_exporter.settings import ExporterSettings


@dataclass
class Deps:
    nc: NATS | None = None


def create_app(settings: ExporterSettings, cfg: TollgateConfig) -> Litestar:
    deps = Deps()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        deps.nc = await connect_nats(settings.nats_url, "tollgate-exporter")
        try:
            yield
        finally:
            await deps.nc.drain()

    checks = lambda: {"nats": partial(check_nats, deps.nc)}  # noqa: E731
    return Litestar(route_handlers=[health_router("exporter", checks)], lifespan=[lifespan])
