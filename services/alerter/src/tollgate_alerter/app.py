"""Assembles the alerter: NATS consumers, Redis state, the dispatcher, schedules and routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
from litestar import Litestar
from nats.aio.client import Client as NATS

from tollgate_alerter.delivery import (
    Destinations,
    Dispatcher,
    GenericWebhook,
    PagerDuty,
    RetryPolicy,
    SmtpMailer,
)
from tollgate_alerter.directory import KvDirectory
from tollgate_alerter.policy import AlertPolicy, parse_duration, policy_from_settings
from tollgate_alerter.routes import health_services_router
from tollgate_alerter.service import Alerter, SelfTest
from tollgate_alerter.settings import AlerterSettings
from tollgate_alerter.state import AlertState
from tollgate_alerter.subscribers import EventConsumer
from tollgate_shared import names
from tollgate_shared.config import TollgateConfig
from tollgate_shared.consuming import run_consumer
from tollgate_shared.dependencies import check_nats, check_redis, connect_redis
from tollgate_shared.events import AlertSent
from tollgate_shared.publishing import connect_nats, publish_event
from tollgate_shared.web import health_router

log = logging.getLogger(__name__)

CONSUMERS = (names.ALERTER_LLM, names.ALERTER_ADMIN, names.ALERTER_LEDGER, names.ALERTER_OPS)


@dataclass
class Deps:
    nc: NATS | None = None
    redis: Any = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def destinations_from(settings: AlerterSettings) -> Destinations:
    s = settings.with_environment()
    return Destinations(
        slack_default=s.slack_webhook_url,
        webhook=GenericWebhook(s.webhook_url) if s.webhook_url else None,
        pagerduty=PagerDuty(s.pagerduty_api_key, s.pagerduty_events_url, s.pagerduty_min_level)
        if s.pagerduty_api_key
        else None,
        mailer=SmtpMailer(
            host=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password,
            sender=s.smtp_sender_email or s.smtp_username or "alerts@tollgate.local",
            start_tls=s.smtp_tls,
        )
        if s.smtp_host
        else None,
        email_to=s.email_recipients,
    )


def hanging_interval(settings: AlerterSettings, policy: AlertPolicy) -> float:
    if settings.hanging_check_interval_s:
        return settings.hanging_check_interval_s
    return min(10.0, max(0.2, policy.threshold_s / 5))


async def every(interval_s: float, work: Callable[[], Awaitable[object]], what: str) -> None:
    """Run `work` forever, `interval_s` apart (with a little jitter so replicas spread out)."""
    while True:
        await asyncio.sleep(interval_s * random.uniform(0.95, 1.05))
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # cancelled mid-await and re-raised as another error: still stop
            log.warning("%s failed: %s", what, exc)


async def stop_tasks(tasks: list[asyncio.Task[None]], tries: int = 20) -> None:
    """Cancel the tasks until they end: a library may turn a cancellation into another error."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        for attempt in range(tries):
            done, _ = await asyncio.wait({task}, timeout=0.5)
            if done:
                break
            log.warning(
                "%s ignored its cancellation (attempt %d); cancelling again",
                task.get_name(),
                attempt + 1,
            )
            task.cancel()
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.warning("%s ended with %r", task.get_name(), task.exception())


def create_app(settings: AlerterSettings, cfg: TollgateConfig) -> Litestar:
    """The alerter app; its lifespan runs the consumers and schedules (bad config fails here)."""
    policy = policy_from_settings(cfg.general_settings)
    fallback_every_s = parse_duration(
        settings.fallback_report_frequency, "fallback_report_frequency"
    )
    deps = Deps()
    self_tests: list[SelfTest] = []

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        deps.nc = await connect_nats(settings.nats_url, "tollgate-alerter")
        js = deps.nc.jetstream()
        deps.redis = connect_redis(settings.redis_url)
        client = httpx.AsyncClient(timeout=settings.delivery_timeout_s)
        state = AlertState(deps.redis, settings.redis_prefix)

        async def publish(event: AlertSent) -> None:
            await publish_event(js, event)

        dispatcher = Dispatcher(
            policy,
            destinations_from(settings),
            client,
            state,
            publish,
            window_s=settings.alert_window_s,
            retry=RetryPolicy(
                settings.delivery_attempts,
                settings.delivery_backoff_s,
                settings.delivery_backoff_max_s,
            ),
        )
        self_tests.append(SelfTest(dispatcher))
        directory = KvDirectory()
        await directory.start(js)
        alerter = Alerter(policy, state, dispatcher, directory, fallback_every_s)
        app.state.alerter = alerter
        app.state.dispatcher = dispatcher
        for spec in CONSUMERS:
            consumer = EventConsumer(spec, alerter)
            deps.tasks.append(
                asyncio.create_task(
                    run_consumer(
                        js, spec, consumer.handle, linger_s=settings.consumer_linger_ms / 1000
                    ),
                    name=spec.name,
                )
            )
        deps.tasks.append(
            asyncio.create_task(
                every(hanging_interval(settings, policy), alerter.check_hanging, "hanging sweep")
            )
        )
        deps.tasks.append(
            asyncio.create_task(
                every(policy.args.report_check_interval, alerter.run_due_reports, "reports")
            )
        )
        log.info(
            "alerter up: destinations=%s types=%d threshold=%ss",
            sorted(policy.destinations),
            len(policy.alert_types),
            policy.threshold_s,
        )
        try:
            yield
        finally:
            await stop_tasks(deps.tasks)
            deps.tasks.clear()
            await dispatcher.close()
            await directory.stop()
            await client.aclose()
            await deps.redis.aclose()
            # close, not drain: a drain waits for messages a cancelled fetch left in the
            # subscription; unacked messages are redelivered to another replica anyway.
            with contextlib.suppress(Exception):
                await deps.nc.flush(timeout=2)
            await deps.nc.close()

    checks = lambda: {  # noqa: E731
        "nats": partial(check_nats, deps.nc),
        "redis": partial(check_redis, deps.redis),
    }

    return Litestar(
        route_handlers=[
            health_router("alerter", checks),
            health_services_router(lambda: self_tests[-1], settings.effective_master_key(cfg)),
        ],
        lifespan=[lifespan],
    )
