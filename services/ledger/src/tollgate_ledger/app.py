"""Assembles the ledger: NATS, PostgreSQL, its two consumers, retention, and the read API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import asyncpg
from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from tollgate_ledger import metrics, subscribers
from tollgate_ledger.budgets import BudgetBook, SpendMirror
from tollgate_ledger.policy import LedgerPolicy
from tollgate_ledger.projections.audit import AuditProjection
from tollgate_ledger.projections.dead_letters import DeadLetterProjection
from tollgate_ledger.projections.reads import LedgerReader
from tollgate_ledger.projections.retention import RetentionProjection
from tollgate_ledger.projections.spend import SpendProjection
from tollgate_ledger.routes.audit import audit_router
from tollgate_ledger.routes.guards import ReadDeps
from tollgate_ledger.routes.responses import EXCEPTION_HANDLERS
from tollgate_ledger.routes.spend import spend_router
from tollgate_ledger.service import (
    Announcer,
    AuditService,
    DeadLetters,
    ReadService,
    Retention,
    SpendService,
    database_probe,
    js_publisher,
    partitions_forever,
    reset_forever,
    retention_forever,
)
from tollgate_ledger.settings import LedgerSettings
from tollgate_shared import consuming, durations, names
from tollgate_shared.config import TollgateConfig
from tollgate_shared.dependencies import check_nats, check_postgres
from tollgate_shared.kvview import KvView
from tollgate_shared.litellm_metrics import MetricsOptions
from tollgate_shared.migrate import apply_migrations
from tollgate_shared.names import ConsumerSpec
from tollgate_shared.publishing import connect_nats
from tollgate_shared.state import KeyState, SpendState
from tollgate_shared.web import health_router

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


async def migrate(database_url: str, schema: str = names.SCHEMA_LEDGER) -> list[int]:
    conn = await asyncpg.connect(database_url)
    try:
        return await apply_migrations(conn, schema, MIGRATIONS)
    finally:
        await conn.close()


async def _stream_age(js: JetStreamContext, stream: str) -> float | None:
    """The stream's max age as provisioned (what a redelivery or replay can reach back)."""
    try:
        info = await js.stream_info(stream)
    except Exception as exc:
        log.warning("stream %s not readable (%s): assuming the provisioned default", stream, exc)
        return names.STREAM_LLM.max_age_s
    return info.config.max_age


@dataclass
class Deps:
    nc: NATS | None = None
    pool: asyncpg.Pool | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def create_app(
    settings: LedgerSettings,
    cfg: TollgateConfig,
    *,
    spend_spec: ConsumerSpec = names.LEDGER_SPEND,
    audit_spec: ConsumerSpec = names.LEDGER_AUDIT,
    dead_letter_spec: ConsumerSpec | None = names.LEDGER_DEAD_LETTERS,
    schema: str = names.SCHEMA_LEDGER,
) -> Litestar:
    deps = Deps()
    policy = LedgerPolicy.from_config(cfg)
    spend_projection = SpendProjection(schema)
    read = ReadDeps(
        reads=ReadService(LedgerReader(schema)), master_key=settings.effective_master_key(cfg)
    )
    if read.master_key is None:
        log.warning("no master key configured: the ledger's read API is open")

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        deps.nc = await connect_nats(settings.nats_url, "tollgate-ledger")
        js = deps.nc.jetstream()
        if settings.migrate_on_start:
            await migrate(settings.database_url, schema)
        deps.pool = await asyncpg.create_pool(
            settings.database_url, min_size=1, max_size=settings.db_pool_size
        )
        read.reads.pool = deps.pool
        # Which virtual keys may read their own rows (admin's key bucket, watched live).
        read_keys = read.reads.keys = KvView(names.KV_KEYS, KeyState)
        try:
            await read_keys.start(js, 10)
        except TimeoutError:
            log.warning("KV bucket of keys not readable yet; only the master key reads")
        budgets = BudgetBook(durations.budget_timezone(cfg.litellm_settings.timezone))
        # LiteLLM's budget gauges: this service owns the totals (issue 12).
        spend_totals = KvView(names.KV_SPEND, SpendState)
        metrics.install_budget_gauges(
            budgets, spend_totals, MetricsOptions.from_settings(cfg.litellm_settings)
        )
        announcer: Announcer | None = None
        # One breaker for both consumers: while PostgreSQL is down they hold their
        # messages instead of spending deliveries (finding 3 of issue 16).
        breaker = consuming.CircuitBreaker("ledger-postgres", database_probe(deps.pool))
        if settings.consumers_enabled:
            try:
                await asyncio.wait_for(budgets.start(js), 10)
                await spend_totals.start(js, 10)
            except TimeoutError:
                log.warning("KV buckets of keys/teams/users not readable yet; budgets unknown")
            publish = js_publisher(js)
            announcer = Announcer(deps.pool, spend_projection, budgets, SpendMirror(js), publish)
            spend = subscribers.SpendSubscriber(
                spend_spec,
                SpendService(
                    spend_spec.name, js, deps.pool, spend_projection, policy, announcer, publish
                ),
                breaker,
            )
            audit = subscribers.AuditSubscriber(
                audit_spec,
                AuditService(audit_spec.name, deps.pool, AuditProjection(schema), policy, publish),
                breaker,
            )
            dead = DeadLetters(deps.pool, js, DeadLetterProjection(schema), publish)
            retention = Retention(
                deps.pool,
                spend_projection,
                RetentionProjection(schema),
                policy.for_stream_age(await _stream_age(js, spend_spec.stream)),
            )
            deps.tasks = [
                asyncio.create_task(
                    subscribers.run_spend(
                        js,
                        spend_spec,
                        spend,
                        settings.spend_batch_size,
                        settings.spend_commits,
                        settings.consumer_linger_ms / 1000,
                    )
                ),
                asyncio.create_task(
                    subscribers.run(
                        js,
                        audit_spec,
                        audit.handle,
                        settings.audit_batch_size,
                        breaker,
                        settings.consumer_linger_ms / 1000,
                    )
                ),
                asyncio.create_task(partitions_forever(deps.pool, spend_projection)),
                asyncio.create_task(retention_forever(retention)),
                asyncio.create_task(
                    reset_forever(
                        deps.pool,
                        spend_projection,
                        budgets,
                        announcer.queue_totals,
                        settings.budget_reset_interval_s,
                    )
                ),
                # What a ledger that stopped between commit and announcement left behind.
                asyncio.create_task(announcer.relay_forever()),
            ]
            if dead_letter_spec is not None:
                # Advisories wait in their stream; the breaker pauses this one too.
                dead_letters = subscribers.DeadLetterSubscriber(dead_letter_spec, dead)
                deps.tasks.append(
                    asyncio.create_task(
                        subscribers.run(js, dead_letter_spec, dead_letters.handle, 50, breaker)
                    )
                )
        try:
            yield
        finally:
            for task in deps.tasks:
                task.cancel()
            for task in deps.tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await breaker.stop()
            if announcer is not None:
                await announcer.stop()
            await budgets.stop()
            await spend_totals.stop()
            await read_keys.stop()
            await deps.pool.close()
            await deps.nc.drain()

    checks = lambda: {  # noqa: E731
        "nats": partial(check_nats, deps.nc),
        "postgres": partial(check_postgres, deps.pool),
    }
    return Litestar(
        route_handlers=[health_router("ledger", checks), spend_router(read), audit_router(read)],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(
            title="Tollgate ledger",
            use_handler_docstrings=True,
            version="0.1.0",
            description="Spend logs, sessions, spend totals and the audit log (read-only).",
        ),
    )
