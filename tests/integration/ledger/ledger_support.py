"""Helpers for ledger tests: assemble and run a consumer until idle, build and publish events."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from support.builders import completed, failed
from tollgate_ledger.budgets import SpendMirror
from tollgate_ledger.policy import LedgerPolicy
from tollgate_ledger.projections.audit import AuditProjection
from tollgate_ledger.projections.spend import SpendProjection
from tollgate_ledger.service import Announcer, AuditService, Publish, SpendService
from tollgate_ledger.subscribers import AuditSubscriber, SpendSubscriber
from tollgate_shared import consuming, names
from tollgate_shared.events import LlmRequestCompleted, LlmRequestFailed
from tollgate_shared.provision import consumer_config


async def run_until_idle(
    js: JetStreamContext,
    spec: names.ConsumerSpec,
    handle: Callable[[list[Any]], Awaitable[None]],
    *,
    timeout: float = 30.0,
    batch_size: int = 500,
) -> None:
    """Run the consumer until it has nothing pending or unacknowledged, then stop it."""
    task = asyncio.create_task(
        consuming.run_consumer(js, spec, handle, batch_size=batch_size, fetch_timeout=0.2)
    )
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        idle_checks = 0
        while True:
            await asyncio.sleep(0.1)
            if task.done():
                task.result()
            info = await js.consumer_info(spec.stream, spec.name)
            idle_checks = (
                idle_checks + 1 if not info.num_pending and not info.num_ack_pending else 0
            )
            if idle_checks >= 3:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"consumer not idle: {info}")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # The cancelled fetch's pull request lives on for its expiry: let it lapse, or the
        # server hands the next message to a subscriber that is gone.
        await asyncio.sleep(0.3)


T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


def make_completed(team: str, n: int, **kw: Any) -> LlmRequestCompleted:
    """Call `n` of a test's team: two keys, one user, one session, spend 0.001 * (n + 1)."""
    fields: dict[str, Any] = {
        "request_id": f"{team}-req-{n}",
        "api_key_hash": f"{team}-key-{n % 2}",
        "key_alias": f"alias-{n % 2}",
        "team_id": team,
        "team_alias": f"{team}-alias",
        "user_id": f"{team}-user",
        "start_time": T0 + timedelta(seconds=n),
        "end_time": T0 + timedelta(seconds=n, milliseconds=500),
        "spend": Decimal("0.001") * (n + 1),
        "session_id": f"{team}-sess",
        "tags": ["tag-a"],
        "messages": [{"role": "user", "content": f"hello {n}"}],
        "response": {"choices": [{"message": {"content": "hi"}}]},
        "proxy_server_request": {"body": {"model": "gpt-4o"}},
    }
    return completed(**{**fields, **kw})


def make_failed(team: str, n: int, **kw: Any) -> LlmRequestFailed:
    """Call `n` of a test's team, failed upstream (500), spending nothing."""
    ok = make_completed(team, n)
    fields: dict[str, Any] = {
        k: getattr(ok, k)
        for k in (
            "request_id",
            "api_key_hash",
            "key_alias",
            "team_id",
            "team_alias",
            "user_id",
            "start_time",
            "end_time",
            "session_id",
            "tags",
            "messages",
            "proxy_server_request",
        )
    }
    return failed(**{**fields, **kw})


def spend_subscriber(
    spec: names.ConsumerSpec,
    js: JetStreamContext,
    pool: asyncpg.Pool,
    policy: LedgerPolicy | None = None,
    *,
    projection: SpendProjection | None = None,
    mirror: SpendMirror | None = None,
    publish: Publish | None = None,
    announce: bool = True,
) -> SpendSubscriber:
    """The spend consumer as the app assembles it (announcer included unless `announce=False`)."""
    projection = projection or SpendProjection(names.SCHEMA_LEDGER)
    announcer = Announcer(pool, projection, None, mirror, publish) if announce else None
    service = SpendService(
        spec.name,
        js,
        pool,
        projection,
        policy or LedgerPolicy(store_prompts=True),
        announcer,
        publish,
    )
    return SpendSubscriber(spec, service)


def audit_subscriber(
    spec: names.ConsumerSpec, pool: asyncpg.Pool, policy: LedgerPolicy
) -> AuditSubscriber:
    service = AuditService(spec.name, pool, AuditProjection(names.SCHEMA_LEDGER), policy)
    return AuditSubscriber(spec, service)


async def publish_raw(js: JetStreamContext, subject: str, payload: bytes) -> None:
    await js.publish(subject, payload, headers={"Nats-Msg-Id": uuid.uuid4().hex})


@contextlib.asynccontextmanager
async def provisioned_consumer(
    js: JetStreamContext, spec: names.ConsumerSpec
) -> AsyncIterator[names.ConsumerSpec]:
    """A test's own durable, as provisioning would create it; deleted afterwards."""
    await js.add_consumer(spec.stream, consumer_config(spec))
    try:
        yield spec
    finally:
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(spec.stream, spec.name)
