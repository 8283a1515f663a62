"""Assembles the exporter: KV views, sinks, per-destination delivery, the consumer, HTTP.

`create_app` builds the service; `dead_letter_desk` builds the same routing and
sinks for the `dlq` command, from an injected JetStream context or a new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
from litestar import Litestar
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from tollgate_exporter.dead_letters import DeadLetterStream
from tollgate_exporter.destinations import Destination
from tollgate_exporter.health import DestinationHealth
from tollgate_exporter.routes.key_health import key_health_handler
from tollgate_exporter.routing import Router
from tollgate_exporter.service import DeadLetterDesk, Dispatcher, Exporter, KeyHealth
from tollgate_exporter.settings import ExporterSettings
from tollgate_exporter.sinks import ClosableSink, SinkContext, registry
from tollgate_exporter.subscribers import SPEC, make_handler
from tollgate_shared import names
from tollgate_shared.config import TollgateConfig
from tollgate_shared.consuming import run_consumer
from tollgate_shared.dependencies import check_nats
from tollgate_shared.kvview import KvView
from tollgate_shared.publishing import connect_nats, hydrate_content
from tollgate_shared.state import KeyState, TeamState
from tollgate_shared.web import health_router

log = logging.getLogger(__name__)


@dataclass
class Deps:
    nc: NATS | None = None
    js: JetStreamContext | None = None
    keys: KvView[KeyState] = field(default_factory=lambda: KvView(names.KV_KEYS, KeyState))
    teams: KvView[TeamState] = field(default_factory=lambda: KvView(names.KV_TEAMS, TeamState))
    router: Router | None = None
    dispatcher: Dispatcher | None = None
    consumer: asyncio.Task[None] | None = None


def _views(
    settings: ExporterSettings, cfg: TollgateConfig
) -> tuple[KvView[KeyState], KvView[TeamState]]:
    sealer = settings.sealer(cfg)
    if sealer is None:
        return KvView(names.KV_KEYS, KeyState), KvView(names.KV_TEAMS, TeamState)
    # Sink credentials set through admin arrive sealed; open them once, as they load.
    return (
        KvView(names.KV_KEYS, KeyState, opener=sealer.open_model),
        KvView(names.KV_TEAMS, TeamState, opener=sealer.open_model),
    )


def _http_client(settings: ExporterSettings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.export_timeout_s),
        limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200),
        follow_redirects=False,
    )


async def _close_sinks(sinks: Mapping[str, ClosableSink]) -> None:
    for sink in sinks.values():
        with contextlib.suppress(Exception):
            await sink.close()


async def _check_views(deps: Deps) -> dict[str, Any]:
    if not (deps.keys.ready.is_set() and deps.teams.ready.is_set()):
        raise ConnectionError("key and team settings not loaded yet")
    if deps.consumer is None or deps.consumer.done():
        raise ConnectionError("consumer not running")
    return {
        "keys": len(deps.keys),
        "teams": len(deps.teams),
        "in_flight": deps.dispatcher.pending if deps.dispatcher else 0,
    }


def create_app(
    settings: ExporterSettings, cfg: TollgateConfig, env: Mapping[str, str] | None = None
) -> Litestar:
    """The exporter app; `env` (default: the process environment) holds sink credentials."""
    deps = Deps()
    deps.keys, deps.teams = _views(settings, cfg)
    environ = dict(os.environ if env is None else env)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        deps.nc = await connect_nats(settings.nats_url, "tollgate-exporter")
        deps.js = js = deps.nc.jetstream()
        client = _http_client(settings)
        sinks = registry().create(SinkContext(client, settings, cfg.litellm_settings, environ))
        dead_letters = DeadLetterStream(js)
        deps.dispatcher = Dispatcher(settings, sinks, dead_letters.publish, SPEC.ack_wait_s)
        try:
            await deps.keys.start(js)
            await deps.teams.start(js)
            deps.router = Router(
                cfg.litellm_settings, environ, deps.keys.get, deps.teams.get, registry()
            )
            exporter = Exporter(deps.router, deps.dispatcher, partial(hydrate_content, js))
            deps.dispatcher.start()
            deps.consumer = asyncio.create_task(
                run_consumer(
                    js,
                    SPEC,
                    make_handler(exporter),
                    linger_s=settings.consumer_linger_ms / 1000,
                ),
                name="exporter-consumer",
            )
            yield
        finally:
            if deps.consumer is not None:
                deps.consumer.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await deps.consumer
            await deps.dispatcher.stop()
            await deps.keys.stop()
            await deps.teams.stop()
            await _close_sinks(sinks)
            await client.aclose()
            # Acks and naks are already written; flush them and close. (A drain would
            # wait on the KV watchers' subscriptions, whose readers are gone by now.)
            with contextlib.suppress(Exception):
                await deps.nc.flush(timeout=2)
            await deps.nc.close()

    def health_of(destination: Destination) -> DestinationHealth | None:
        return deps.dispatcher.health.get(destination.key) if deps.dispatcher else None

    key_health = KeyHealth(
        lambda: deps.router,
        deps.keys.get,
        health_of,
        settings.effective_master_key(cfg),
        settings.export_health_window_s,
    )
    checks = lambda: {  # noqa: E731
        "nats": partial(check_nats, deps.nc),
        "exporter": partial(_check_views, deps),
    }
    return Litestar(
        route_handlers=[health_router("exporter", checks), key_health_handler(key_health.check)],
        lifespan=[lifespan],
    )


@asynccontextmanager
async def dead_letter_desk(
    settings: ExporterSettings,
    cfg: TollgateConfig,
    env: Mapping[str, str] | None = None,
    js: JetStreamContext | None = None,
) -> AsyncIterator[DeadLetterDesk]:
    """The dead-letter desk with the service's routing state and sinks (for `dlq`)."""
    environ = dict(os.environ if env is None else env)
    nc: NATS | None = None
    if js is None:
        nc = await connect_nats(settings.nats_url, "tollgate-exporter-dlq")
        js = nc.jetstream()
    keys, teams = _views(settings, cfg)
    client = _http_client(settings)
    sinks = registry().create(SinkContext(client, settings, cfg.litellm_settings, environ))
    try:
        await keys.start(js)
        await teams.start(js)
        router = Router(cfg.litellm_settings, environ, keys.get, teams.get, registry())
        yield DeadLetterDesk(DeadLetterStream(js), router, sinks, partial(hydrate_content, js))
    finally:
        await keys.stop()
        await teams.stop()
        await _close_sinks(sinks)
        await client.aclose()
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.flush(timeout=2)
            await nc.close()
