"""The upstream's own rate-limit headers land in litellm_remaining_requests/tokens_metric
with the call's labels, and a body over the limit is refused unread as a counted 413."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from tollgate_ingress.metrics import Recorder
from tollgate_ingress.routes.llm import _MAX_BODY, FastLlmRoutes
from tollgate_ingress.service import Gateway, StateViews
from tollgate_ingress.upstream.openai import UpstreamLimits
from tollgate_shared import litellm_metrics as lm
from tollgate_shared.config import TollgateConfig
from tollgate_shared.events import LlmRequestCompleted, LlmRequestFailed

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _completed(**kw: Any) -> LlmRequestCompleted:
    base: dict[str, Any] = {
        "producer": "ingress",
        "request_id": "r1",
        "call_type": "acompletion",
        "api_key_hash": "h1",
        "key_alias": "alias-1",
        "requested_model": "gpt-4o",
        "model_group": "gpt-4o",
        "model_id": "dep-1",
        "model": "gpt-4o-2024",
        "custom_llm_provider": "openai",
        "api_base": "http://up",
        "start_time": T0,
        "end_time": T0 + timedelta(seconds=1),
        "total_latency_ms": 1000.0,
        "upstream_latency_ms": 998.0,
        "overhead_latency_ms": 2.0,
        "prompt_tokens": 10,
        "completion_tokens": 20,
        "total_tokens": 30,
        "spend": Decimal("0.5"),
    }
    base.update(kw)
    return LlmRequestCompleted(**base)


class _View(dict[str, Any]):
    def items(self) -> Any:  # type: ignore[override]
        return dict(self)


class _Publisher:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def emit(self, event: Any) -> None:
        self.events.append(event)


def test_upstream_limits_keep_the_latest_headers_per_deployment() -> None:
    limits = UpstreamLimits()
    limits.seen("d1", httpx.Headers({"x-ratelimit-remaining-requests": "59"}))
    limits.seen("d1", httpx.Headers({}))  # an answer without the headers keeps the last
    assert limits.latest("d1") == (59, None)
    limits.seen(
        "d1",
        httpx.Headers(
            {"x-ratelimit-remaining-requests": "58", "x-ratelimit-remaining-tokens": "149000.0"}
        ),
    )
    assert limits.latest("d1") == (58, 149000)
    limits.seen("d2", httpx.Headers({"x-ratelimit-remaining-tokens": "garbage"}))
    assert limits.latest("d2") == (None, None)


def test_remaining_requests_and_tokens_carry_the_calls_labels() -> None:
    limits = UpstreamLimits()
    limits.seen(
        "dep-limits",
        httpx.Headers(
            {"x-ratelimit-remaining-requests": "41", "x-ratelimit-remaining-tokens": "9000"}
        ),
    )
    rec = Recorder(lm.MetricsOptions(max_series=100), limits.latest)
    rec.record(_completed(model_id="dep-limits", api_key_hash="h-limits"))
    labels = {
        "model_group": "gpt-4o",
        "api_provider": "openai",
        "api_base": "http://up",
        "litellm_model_name": "gpt-4o-2024",
        "hashed_api_key": "h-limits",
        "api_key_alias": "alias-1",
        "model_id": "dep-limits",
    }
    assert REGISTRY.get_sample_value("litellm_remaining_requests", labels) == 41
    assert REGISTRY.get_sample_value("litellm_remaining_tokens", labels) == 9000
    # A call to a deployment that never sent the headers sets nothing.
    rec.record(_completed(model_id="dep-silent", api_key_hash="h-limits"))
    silent = {**labels, "model_id": "dep-silent"}
    assert REGISTRY.get_sample_value("litellm_remaining_requests", silent) is None


class _Inner:
    """Litestar's place: must not be reached for an oversized LLM POST."""

    def __init__(self) -> None:
        self.state: Any = None
        self.called = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.called = True


def test_an_oversized_body_is_refused_unread_as_a_counted_413() -> None:
    cfg = TollgateConfig.model_validate(
        {"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/m"}}]}
    )
    views = StateViews(
        keys=_View(),  # type: ignore[arg-type]
        teams=_View(),  # type: ignore[arg-type]
        users=_View(),  # type: ignore[arg-type]
        models=_View(),  # type: ignore[arg-type]
        spend=_View(),  # type: ignore[arg-type]
    )
    pub = _Publisher()
    gw = Gateway(cfg, "sk-master-413", pub, None, views, 1.0)  # type: ignore[arg-type]
    inner = _Inner()
    inner.state = type("S", (), {"gateway": gw})()
    app = FastLlmRoutes(inner)  # type: ignore[arg-type]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        raise AssertionError("the body of an oversized request is not read")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    def scope(key: str) -> dict[str, Any]:
        return {
            "type": "http",
            "method": "POST",
            "path": "/v1/chat/completions",
            "headers": [
                (b"content-length", str(_MAX_BODY + 1).encode()),
                (b"authorization", f"Bearer {key}".encode()),
            ],
            "client": ("10.4.1.3", 5555),
        }

    asyncio.run(app(scope("sk-master-413"), receive, send))
    asyncio.run(app(scope("sk-wrong"), receive, send))
    assert not inner.called
    statuses = [m["status"] for m in sent if m["type"] == "http.response.start"]
    assert statuses == [413, 401]
    failed = [e for e in pub.events if isinstance(e, LlmRequestFailed)]
    assert [(e.status_code, e.error_class) for e in failed] == [
        (413, "RequestTooLargeError"),
        (401, "AuthenticationError"),
    ]
    counted = [
        (s.labels, s.value)
        for fam in REGISTRY.collect()
        for s in fam.samples
        if s.name == "litellm_proxy_failed_requests_metric_total"
        and s.labels["client_ip"] == "10.4.1.3"
    ]
    by_status = {lab["exception_status"]: (lab, v) for lab, v in counted}
    assert set(by_status) == {"413", "401"}
    labels, value = by_status["413"]
    assert labels["exception_class"] == "RequestTooLargeError"
    assert labels["route"] == "/chat/completions"
    assert labels["hashed_api_key"] != "None"  # the master key was identified
    assert value == 1
    assert by_status["401"][0]["hashed_api_key"] == "None"
