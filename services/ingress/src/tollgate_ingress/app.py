"""Assembles ingress: publisher, watched state, upstream client, routes, health and metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
from httpx_aiohttp import AiohttpTransport
from litestar import Litestar
from nats.aio.client import Client as NATS

from tollgate_ingress.forwarding import Owners
from tollgate_ingress.limits import RateLimiter
from tollgate_ingress.routes.forward import forward
from tollgate_ingress.routes.llm import FastLlmRoutes, chat_completions, list_models
from tollgate_ingress.service import Gateway, StateViews
from tollgate_ingress.settings import IngressSettings
from tollgate_shared import names
from tollgate_shared.config import TollgateConfig
from tollgate_shared.dependencies import check_redis
from tollgate_shared.kvview import KvView
from tollgate_shared.publishing import EventPublisher, connect_nats
from tollgate_shared.state import KeyState, ModelState, SpendState, TeamState, UserState
from tollgate_shared.web import health_router

log = logging.getLogger(__name__)


async def _connect_with_retry(url: str, timeout: float) -> NATS:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await connect_nats(url, "tollgate-ingress-state")
        except Exception as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"NATS at {url} unreachable for {timeout}s: {exc}") from exc
            log.warning("waiting for NATS at %s to load keys, teams and models (%s)", url, exc)
            await asyncio.sleep(1)


def spool_path(settings: IngressSettings) -> Path:
    # One spool per replica: the default name carries the port.
    if settings.spool_path == IngressSettings.model_fields["spool_path"].default:
        return settings.spool_path.with_name(f"ingress-spool-{settings.port}.sqlite3")
    return settings.spool_path


def create_app(settings: IngressSettings, cfg: TollgateConfig) -> FastLlmRoutes:
    master_key = settings.effective_master_key(cfg)
    holder: dict[str, Any] = {}

    def models_changed(_key: str, _value: ModelState | None) -> None:
        if "gateway" in holder:
            holder["gateway"].refresh_models()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        publisher = EventPublisher(settings.nats_url, spool_path(settings), "tollgate-ingress")
        await publisher.start()
        nc = await _connect_with_retry(settings.nats_url, settings.state_ready_timeout_s)
        sealer = settings.sealer(cfg)
        views = StateViews(
            keys=KvView(names.KV_KEYS, KeyState),
            teams=KvView(names.KV_TEAMS, TeamState),
            users=KvView(names.KV_USERS, UserState),
            # Upstream credentials of API-added models arrive sealed; opened as they load.
            models=KvView(
                names.KV_MODELS,
                ModelState,
                on_change=models_changed,
                opener=sealer.open_model if sealer is not None else None,
            ),
            spend=KvView(names.KV_SPEND, SpendState),
        )
        # Before accepting traffic: the whole current view of keys, teams and models.
        for view in views.all():
            await view.start(nc.jetstream(), settings.state_ready_timeout_s)
        limits = httpx.Limits(
            max_connections=settings.upstream_max_connections,
            max_keepalive_connections=settings.upstream_max_connections,
        )
        # aiohttp under httpx's API: the same client code, a much cheaper connection pool
        # on the hot path than httpcore's (see the README's performance section).
        client = httpx.AsyncClient(
            transport=AiohttpTransport(limits=limits, trust_env=False),
            timeout=settings.upstream_timeout_s,
        )
        forward_client = httpx.AsyncClient(timeout=60.0)
        redis = aioredis.from_url(settings.redis_url, socket_connect_timeout=1, socket_timeout=1)
        gateway = Gateway(
            cfg,
            master_key,
            publisher,
            client,
            views,
            settings.upstream_timeout_s,
            RateLimiter(redis),
        )
        holder["gateway"] = gateway
        app.state.gateway = gateway
        app.state.nc = nc
        app.state.forward_client = forward_client
        app.state.owners = Owners(
            settings.admin_url, settings.ledger_url, settings.exporter_url, settings.alerter_url
        )
        log.info(
            "ingress ready: %d models, %d keys, %d teams",
            len(gateway.router.model_names()),
            len(views.keys),
            len(views.teams),
        )
        try:
            yield
        finally:
            for view in views.all():
                await view.stop()
            await client.aclose()
            await forward_client.aclose()
            await publisher.close()
            await redis.aclose()
            await nc.drain()

    def checks() -> dict[str, Any]:
        gw: Gateway | None = holder.get("gateway")

        async def publisher() -> dict[str, Any]:
            if gw is None:
                raise RuntimeError("starting")
            return await gw.publisher.check()

        async def state() -> dict[str, Any]:
            if gw is None:
                raise RuntimeError("starting")
            return {
                "keys": len(gw.views.keys),
                "teams": len(gw.views.teams),
                "models": len(gw.router.model_names()),
            }

        async def redis() -> dict[str, Any]:
            if gw is None or gw.limiter is None:
                raise RuntimeError("starting")
            return await check_redis(gw.limiter.redis)

        return {"nats": publisher, "state": state, "redis": redis}

    app = Litestar(
        route_handlers=[chat_completions, list_models, forward, health_router("ingress", checks)],
        lifespan=[lifespan],
    )
    return FastLlmRoutes(app)
