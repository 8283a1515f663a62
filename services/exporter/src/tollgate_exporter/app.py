"""Assembles the exporter: KV views, sinks, per-destination delivery, the consumer, HTTP."""

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

from tollgate_exporter.delivery import DestinationHealth, Dispatcher
from tollgate_exporter.routes.key_health import key_health_handler
from tollgate_exporter.routing import Destination, Router
from tollgate_exporter.settings import ExporterSettings
from tollgate_exporter.sinks import Sink
from tollgate_exporter.sinks.langfuse import LangfuseSink
from tollgate_exporter.sinks.otel import OtelSink
from tollgate_exporter.sinks.webhook import WebhookSink
from tollgate_exporter.subscribers import SPEC, make_handler
from tollgate_shared import names
from tollgate_shared.config import TollgateConfig
from tollgate_shared.consuming import run_consumer
from tollgate_shared.dependencies import check_nats
from tollgate_shared.events import ExportDeadLettered
from tollgate_shared.kvview import KvView
from tollgate_shared.publishing import connect_nats, publish_event
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
    sealer = settings.sealer(cfg)
    if sealer is not None:
        # Sink credentials set through admin arrive sealed; open them once, as they load.
        deps.keys = KvView(names.KV_KEYS, KeyState, opener=sealer.open_model)
        deps.teams = KvView(names.KV_TEAMS, TeamState, opener=sealer.open_model)
    environ = dict(os.environ if env is None else env)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        deps.nc = await connect_nats(settings.nats_url, "tollgate-exporter")
        deps.js = js = deps.nc.jetstream()
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.export_timeout_s),
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200),
            follow_redirects=False,
        )
        otel = OtelSink(client, settings.export_timeout_s)
        sinks: dict[str, Sink] = {
            "langfuse": LangfuseSink(
                client,
                cfg.litellm_settings.langfuse_default_tags,
                environ.get("PROXY_BASE_URL") or settings.public_url,
            ),
            "otel": otel,
            "webhook": WebhookSink(client),
        }

        async def publish_dead_letter(record: ExportDeadLettered) -> None:
            await publish_event(js, record)

        deps.dispatcher = Dispatcher(settings, sinks, publish_dead_letter, SPEC.ack_wait_s)
        try:
            await deps.keys.start(js)
            await deps.teams.start(js)
            deps.router = Router(cfg.litellm_settings, environ, deps.keys.get, deps.teams.get)
            deps.dispatcher.start()
            deps.consumer = asyncio.create_task(
                run_consumer(js, SPEC, make_handler(js, deps.router, deps.dispatcher)),
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
            await otel.close()
            await client.aclose()
            # Acks and naks are already written; flush them and close. (A drain would
            # wait on the KV watchers' subscriptions, whose readers are gone by now.)
            with contextlib.suppress(Exception):
                await deps.nc.flush(timeout=2)
            await deps.nc.close()

    def health_of(destination: Destination) -> DestinationHealth | None:
        return deps.dispatcher.health.get(destination.key) if deps.dispatcher else None

    checks = lambda: {  # noqa: E731
        "nats": partial(check_nats, deps.nc),
        "exporter": partial(_check_views, deps),
    }
    return Litestar(
        route_handlers=[
            health_router("exporter", checks),
            key_health_handler(
                lambda: deps.router,
                deps.keys.get,
                health_of,
                settings.effective_master_key(cfg),
                settings.export_health_window_s,
            ),
        ],
        lifespan=[lifespan],
    )
