"""Fixtures for the alerter's integration tests: in-process alerters, receivers, event builders."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from litestar import Litestar

from support.alert_receivers import AlertReceiver, SmtpReceiver, alert_receiver, smtp_receiver
from tollgate_alerter.app import create_app
from tollgate_alerter.settings import AlerterSettings
from tollgate_devstack.embedded import StackUrls
from tollgate_shared.config import parse_config
from tollgate_shared.events import LlmRequestCompleted, LlmRequestFailed, LlmRequestStarted

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


def _times(seconds: float) -> tuple[datetime, datetime]:
    end = datetime.now(UTC)
    return end - timedelta(seconds=seconds), end


def _base(uid: str, **kw: Any) -> dict[str, Any]:
    return {
        "producer": "ingress",
        "request_id": kw.pop("request_id", f"req-{uuid.uuid4().hex[:12]}"),
        "call_type": "acompletion",
        "requested_model": "fake",
        "model_group": "fake",
        "model_id": kw.pop("model_id", f"dep-{uid}"),
        "model": "fake-model",
        "custom_llm_provider": "openai",
        "api_base": "http://upstream.test:9/v1?api-key=hidden",
        "key_alias": "ops-key",
        "team_id": f"team-{uid}",
        "team_alias": "Ops",
        **kw,
    }


def failed_event(uid: str, status: int = 503, seconds: float = 0.05, **kw: Any) -> LlmRequestFailed:
    start, end = _times(seconds)
    return LlmRequestFailed(
        **_base(uid, **kw),
        start_time=start,
        end_time=end,
        total_latency_ms=seconds * 1000,
        error_class="APIError",
        error_message="upstream said no",
        status_code=status,
        upstream_status_code=status,
        messages=[{"role": "user", "content": "TOP SECRET PROMPT"}],
    )


def completed_event(uid: str, seconds: float = 0.05, **kw: Any) -> LlmRequestCompleted:
    start, end = _times(seconds)
    return LlmRequestCompleted(
        **_base(uid, **kw),
        start_time=start,
        end_time=end,
        total_latency_ms=seconds * 1000,
        completion_tokens=5,
        messages=[{"role": "user", "content": "TOP SECRET PROMPT"}],
        response={"choices": [{"message": {"content": "TOP SECRET ANSWER"}}]},
    )


def started_event(uid: str, **kw: Any) -> LlmRequestStarted:
    return LlmRequestStarted(**_base(uid, **kw), start_time=datetime.now(UTC))


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
        return failed_event(self.uid, status, seconds, **kw)

    def completed(self, seconds: float = 0.05, **kw: Any) -> LlmRequestCompleted:
        return completed_event(self.uid, seconds, **kw)

    def started(self, **kw: Any) -> LlmRequestStarted:
        return started_event(self.uid, **kw)


@pytest.fixture
def events(uid: str) -> EventFactory:
    return EventFactory(uid)
