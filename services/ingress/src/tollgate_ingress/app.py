"""Assembles ingress: publisher, watched state, upstream client, routes, health and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from litestar import Litestar
from nats.aio.client import Client as NATS

from tollgate_ingress.completions.service import Completions
from tollgate_ingress.console import console_router
from tollgate_ingress.forwarding import Owners
from tollgate_ingress.limits import RateLimiter
from tollgate_ingress.messages.service import Messages
from tollgate_ingress.responses.service import Responses
from tollgate_ingress.responses.store import ResponseStore
from tollgate_ingress.routes.forward import forward
from tollgate_ingress.routes.llm import (
    FastLlmRoutes,
    chat_completions,
    list_models,
    text_completions,
)
from tollgate_ingress.routes.messages import create_message
from tollgate_ingress.routes.responses import response_routes
from tollgate_ingress.routes.surface import probe_router, retrieve_model, unserved
from tollgate_ingress.service import BudgetPolicy, Gateway, StateViews
from tollgate_ingress.settings import IngressSettings
from tollgate_ingress.upstream.http import UpstreamClient
from tollgate_shared import names
from tollgate_shared.config import TollgateConfig
from tollgate_shared.dependencies import check_redis, connect_redis
from tollgate_shared.kvview import KvView
from tollgate_shared.publishing import EventPublisher, connect_nats
from tollgate_shared.runtime import PEER_KEEPALIVE_EXPIRY_S
from tollgate_shared.spool import Spool, SpoolInUseError
from tollgate_shared.state import KeyState, ModelState, SpendState, TeamState, UserState
from tollgate_shared.web import OPENAI_EXCEPTION_HANDLERS, health_router, peer_check

log = logging.getLogger(__name__)


async def _connect_within(url: str, timeout: float) -> NATS | None:
    """The state connection, or None when NATS did not answer within `timeout` (the client
    itself retries a refused first connection for ever)."""
    try:
        return await asyncio.wait_for(connect_nats(url, "tollgate-ingress-state"), timeout)
    except Exception as exc:
        log.warning("NATS at %s did not answer within %.0f s (%r)", url, timeout, exc)
        return None


async def _load_state(
    url: str, views: StateViews, timeout: float, connected: Callable[[NATS], None]
) -> None:
    """Degraded start: keep trying NATS, then load the views (the service is already up)."""
    while True:
        try:
            nc = await connect_nats(url, "tollgate-ingress-state")
            break
        except Exception as exc:
            log.warning("NATS at %s still unreachable (%s)", url, exc)
            await asyncio.sleep(1)
    connected(nc)
    for view in views.all():
        try:
            await view.start(nc.jetstream(), timeout)
        except TimeoutError:
            log.warning("%s not loaded within %.0f s; still watching", view.bucket, timeout)
    log.info("NATS is back: keys, teams and models loaded; ingress no longer degraded")


def _replica_spool(settings: IngressSettings) -> Path:
    # One spool per replica: the default name carries the port.
    if settings.spool_path == IngressSettings.model_fields["spool_path"].default:
        return settings.spool_path.with_name(f"ingress-spool-{settings.port}.sqlite3")
    return settings.spool_path


def _worker_spool(base: Path, index: int) -> Path:
    return base.with_name(f"{base.stem}-w{index}{base.suffix}")


def spool_path(settings: IngressSettings) -> Path:
    """This process's spool: one per replica and, with several workers, one per worker
    (`ingress-spool-4000-w1.sqlite3`)."""
    base = _replica_spool(settings)
    return base if settings.worker_index is None else _worker_spool(base, settings.worker_index)


def stranded_spools(settings: IngressSettings) -> list[Path]:
    """Spool files of this replica that no running process owns, which this process takes
    over at start: worker 0 (or the single process) takes those of worker indexes past
    the current count, and, with workers, the single process's file; so lowering or
    raising TOLLGATE_INGRESS_WORKERS strands nothing."""
    if settings.worker_index not in (None, 0):
        return []
    base = _replica_spool(settings)
    workers = 0 if settings.worker_index is None else settings.ingress_workers
    name = re.compile(rf"{re.escape(base.stem)}-w(\d+){re.escape(base.suffix)}")
    found = [
        p
        for p in base.parent.glob(f"{base.stem}-w*{base.suffix}")
        if (m := name.fullmatch(p.name)) is not None and int(m[1]) >= workers
    ]
    if settings.worker_index is not None and base.exists():
        found.append(base)
    return sorted(found)


def worker_settings(settings: IngressSettings, index: int) -> IngressSettings:
    """The settings of worker `index` of `settings.ingress_workers` (its spool file)."""
    return settings.model_copy(update={"worker_index": index})


def take_over_stranded(settings: IngressSettings) -> None:
    """Move the rows of stranded spool files into this process's own, before it publishes."""
    stranded = stranded_spools(settings)
    if not stranded:
        return
    spool = Spool(spool_path(settings))
    try:
        for path in stranded:
            try:
                moved = spool.take_over(path)
            except SpoolInUseError:
                log.warning("spool %s is held by a running process: left to it", path)
            except (OSError, sqlite3.Error) as exc:
                log.error("spool %s could not be taken over (%s): left in place", path, exc)
            else:
                log.info("took over %d spooled events from %s", moved, path)
    finally:
        spool.close()


def create_app(settings: IngressSettings, cfg: TollgateConfig) -> FastLlmRoutes:
    master_key = settings.effective_master_key(cfg)
    holder: dict[str, Any] = {}

    def models_changed(_key: str, _value: ModelState | None) -> None:
        if "gateway" in holder:
            holder["gateway"].refresh_models()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        take_over_stranded(settings)
        publisher = EventPublisher(
            settings.nats_url,
            spool_path(settings),
            "tollgate-ingress",
            write_ahead_ms=settings.spool_write_ahead_ms,
        )
        await publisher.start()
        nc = await _connect_within(settings.nats_url, settings.nats_start_timeout_s)
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
        loader: asyncio.Task[None] | None = None

        def connected(client: NATS) -> None:
            holder["nc"] = app.state.nc = client

        if nc is not None:
            connected(nc)
            # Before accepting traffic: the whole current view of keys, teams and models.
            for view in views.all():
                await view.start(nc.jetstream(), settings.state_ready_timeout_s)
        else:
            log.error(
                "NATS at %s unreachable after %.0f s: serving degraded (events spooled to "
                "disk; only the master key and config.yaml's models until NATS answers)",
                settings.nats_url,
                settings.nats_start_timeout_s,
            )
            loader = asyncio.create_task(
                _load_state(settings.nats_url, views, settings.state_ready_timeout_s, connected)
            )

        def spend_live() -> bool:
            client: NATS | None = holder.get("nc")
            return client is not None and client.is_connected and views.spend.ready.is_set()

        client = UpstreamClient(
            max_connections=settings.upstream_max_connections,
            timeout=settings.upstream_timeout_s,
        )
        forward_client = httpx.AsyncClient(
            timeout=60.0, limits=httpx.Limits(keepalive_expiry=PEER_KEEPALIVE_EXPIRY_S)
        )
        redis = connect_redis(settings.redis_url, socket_connect_timeout=1, socket_timeout=1)
        gateway = Gateway(
            cfg,
            master_key,
            publisher,
            client,
            views,
            settings.upstream_timeout_s,
            RateLimiter(redis),
            BudgetPolicy(
                fail_open=settings.budget_fail_open,
                hold_s=settings.budget_hold_s,
                reserve_output_tokens=settings.budget_reserve_output_tokens,
                timezone=cfg.litellm_settings.timezone,
            ),
            spend_live,
            started_after_s=settings.started_event_after_ms / 1000,
        )
        holder["gateway"] = gateway
        app.state.gateway = gateway
        # Response state (previous_response_id) in the Redis every replica shares.
        app.state.responses = Responses(
            gateway, ResponseStore(redis, settings.response_retention_s)
        )
        app.state.messages = Messages(gateway)
        app.state.completions = Completions(gateway)
        app.state.forward_client = holder["forward_client"] = forward_client
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
            if loader is not None:
                loader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await loader
            for view in views.all():
                await view.stop()
            await client.aclose()
            await forward_client.aclose()
            await publisher.close()
            await redis.aclose()
            state_nc: NATS | None = holder.get("nc")
            if state_nc is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(state_nc.drain(), 5)

    def checks() -> dict[str, Any]:
        gw: Gateway | None = holder.get("gateway")

        async def publisher() -> dict[str, Any]:
            if gw is None:
                raise RuntimeError("starting")
            return await gw.publisher.check()

        async def state() -> dict[str, Any]:
            if gw is None:
                raise RuntimeError("starting")
            if not gw.views.keys.ready.is_set():
                raise RuntimeError(
                    "degraded: NATS unreachable, keys, teams and models not loaded yet"
                )
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

    def peers() -> dict[str, Any]:
        """Which of the services ingress forwards to answer (shown, not required)."""
        client = holder.get("forward_client")
        if client is None:
            return {}
        return {
            "admin": peer_check(client, settings.admin_url),
            "ledger": peer_check(client, settings.ledger_url),
            "exporter": peer_check(client, settings.exporter_url),
            "alerter": peer_check(client, settings.alerter_url),
        }

    # Which of several workers on the port answered (None: ingress is one process).
    worker = (
        None
        if settings.worker_index is None
        else {
            "index": settings.worker_index,
            "workers": settings.ingress_workers,
            "pid": os.getpid(),
        }
    )
    app = Litestar(
        route_handlers=[
            chat_completions,
            text_completions,
            list_models,
            *response_routes,
            create_message,
            retrieve_model,
            unserved,
            probe_router(checks),
            forward,
            health_router("ingress", checks, peers=peers, worker=worker),
            console_router,
        ],
        lifespan=[lifespan],
        exception_handlers=OPENAI_EXCEPTION_HANDLERS,
    )
    return FastLlmRoutes(app)
