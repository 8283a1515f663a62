"""Fixtures for the alerter's integration tests: in-process alerters, receivers, events, markers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from litestar import Litestar
from nats.js import JetStreamContext

from support import builders
from support.alert_receivers import AlertReceiver, SmtpReceiver, alert_receiver, smtp_receiver
from tollgate_alerter.app import create_app
from tollgate_alerter.settings import AlerterSettings
from tollgate_devstack.embedded import StackUrls
from tollgate_shared import names
from tollgate_shared.config import parse_config
from tollgate_shared.events import Event, LlmRequestCompleted, LlmRequestFailed, LlmRequestStarted
from tollgate_shared.events.registry import subject_matches
from tollgate_shared.publishing import msg_headers

MASTER_KEY = "sk-alerter-test-master-key-0123"

RunAlerter = Callable[..., Any]


@pytest.fixture
def receiver() -> Iterator[AlertReceiver]:
    with alert_receiver() as r:
        yield r


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    with smtp_receiver() as s:
        yield s


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def run_alerter(provisioned: StackUrls, uid: str) -> RunAlerter:
    """`async with run_alerter(general_settings, **settings) as (app, client)`: one replica."""

    @asynccontextmanager
    async def run(
        general: dict[str, Any], **overrides: Any
    ) -> AsyncIterator[tuple[Litestar, httpx.AsyncClient]]:
        cfg = parse_config({"general_settings": {"master_key": MASTER_KEY, **general}}, "test")
        values: dict[str, Any] = {
            "nats_url": provisioned.nats_url,
            "redis_url": provisioned.redis_url,
            "redis_prefix": f"test-alerter:{uid}",
            "alert_window_s": 1.0,
            "delivery_backoff_s": 0.05,
            "delivery_backoff_max_s": 0.2,
            "hanging_check_interval_s": 0.2,
            "smtp_tls": False,
            **overrides,
        }
        app = create_app(AlerterSettings(**values), cfg)
        async with (
            LifespanManager(app, startup_timeout=30, shutdown_timeout=30),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://alerter"
            ) as client,
        ):
            yield app, client

    return run


def _times(seconds: float) -> dict[str, datetime]:
    end = datetime.now(UTC)
    return {"start_time": end - timedelta(seconds=seconds), "end_time": end}


def _call(uid: str) -> dict[str, Any]:
    """The fields that place a call on this test's deployment and team, with a unique id
    (tests look request ids up as substrings of alert texts)."""
    return {
        "request_id": f"req-{uuid.uuid4().hex[:12]}",
        "requested_model": "fake",
        "model_group": "fake",
        "model_id": f"dep-{uid}",
        "model": "fake-model",
        "api_base": "http://upstream.test:9/v1?api-key=hidden",
        "key_alias": "ops-key",
        "team_id": f"team-{uid}",
        "team_alias": "Ops",
    }


@dataclass(frozen=True)
class EventFactory:
    """LLM events for one test: its own deployment id, team and fresh request ids."""

    uid: str

    @property
    def deployment(self) -> str:
        return f"dep-{self.uid}"

    @property
    def team(self) -> str:
        return f"team-{self.uid}"

    def failed(self, status: int = 503, seconds: float = 0.05, **kw: Any) -> LlmRequestFailed:
        return builders.failed(
            **{
                **_call(self.uid),
                **_times(seconds),
                "total_latency_ms": seconds * 1000,
                "error_message": "upstream said no",
                "status_code": status,
                "upstream_status_code": status,
                "messages": [{"role": "user", "content": "TOP SECRET PROMPT"}],
                **kw,
            }
        )

    def completed(self, seconds: float = 0.05, **kw: Any) -> LlmRequestCompleted:
        return builders.completed(
            **{
                **_call(self.uid),
                **_times(seconds),
                "total_latency_ms": seconds * 1000,
                "messages": [{"role": "user", "content": "TOP SECRET PROMPT"}],
                "response": {"choices": [{"message": {"content": "TOP SECRET ANSWER"}}]},
                **kw,
            }
        )

    def started(self, **kw: Any) -> LlmRequestStarted:
        return builders.started(**{**_call(self.uid), "start_time": datetime.now(UTC), **kw})


@pytest.fixture
def events(uid: str) -> EventFactory:
    return EventFactory(uid)


Settle = Callable[..., Awaitable[None]]
ALERTER_CONSUMERS = (names.ALERTER_LLM, names.ALERTER_ADMIN, names.ALERTER_LEDGER)


@pytest.fixture
def settle(js: JetStreamContext) -> Settle:
    """`await settle(marker)`: publish `marker`, then wait until the alerter consumer that
    reads it has acked (or terminated) it and every message before it.

    Use before asserting that nothing arrived: once the marker is acked, every earlier
    event has been evaluated and its alerts handed to the dispatcher; leaving the
    `run_alerter` block then sends whatever waits in an anti-storm window.
    """

    async def wait(marker: Event, timeout: float = 15.0) -> None:
        subject = marker.subject()
        spec = next(
            s
            for s in ALERTER_CONSUMERS
            if any(subject_matches(f, subject) for f in s.filter_subjects)
        )
        ack = await js.publish(subject, marker.to_json(), headers=msg_headers(marker))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            info = await js.consumer_info(spec.stream, spec.name)
            if info.ack_floor.stream_seq >= ack.seq:
                return
            if loop.time() > deadline:
                raise AssertionError(f"{spec.name} did not ack past seq {ack.seq}: {info}")
            await asyncio.sleep(0.05)

    return wait
