"""GenAI metrics over OTLP beside the spans (the `otel` callback): a real collector endpoint
decodes `/v1/metrics` protobuf; values, buckets and attributes are checked, and
`OTEL_METRICS_EXPORTER=none` sends spans only."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from asgi_lifespan import LifespanManager
from nats.js import JetStreamContext

from support.receivers import serving
from support.receivers.otlp_metrics import HistogramPoint, OtlpMetricsReceiver
from support.receivers.samples import completed, failed
from tollgate_devstack.embedded import StackUrls
from tollgate_exporter.app import create_app
from tollgate_exporter.settings import ExporterSettings
from tollgate_shared.config import parse_config
from tollgate_shared.publishing import publish_event

TOKENS = "gen_ai.client.token.usage"
DURATION = "gen_ai.client.operation.duration"
TTFT = "gen_ai.client.operation.time_to_first_chunk"


def _settings(provisioned: StackUrls) -> ExporterSettings:
    return ExporterSettings(nats_url=provisioned.nats_url, export_batch_wait_s=0.05)


async def _eventually(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def _total(points: list[HistogramPoint]) -> tuple[int, float, list[int]]:
    """Count, sum and bucket counts over the points (the calls may come in several batches)."""
    buckets = [0] * (len(points[0].explicit_bounds) + 1) if points else []
    for p in points:
        buckets = [a + b for a, b in zip(buckets, p.bucket_counts, strict=True)]
    return sum(p.count for p in points), sum(p.sum for p in points), buckets


async def test_token_usage_duration_and_time_to_first_token_reach_the_collector(
    provisioned: StackUrls, js: JetStreamContext
) -> None:
    model = f"gpt-metrics-{uuid.uuid4().hex[:8]}"
    start = datetime.now(UTC) - timedelta(seconds=5)
    calls = [
        completed(requested_model=model, start_time=start),
        completed(requested_model=model, start_time=start),
        completed(
            requested_model=model,
            start_time=start,
            prompt_tokens=100,
            completion_tokens=3000,
            total_tokens=3100,
            total_latency_ms=2000.0,
            end_time=start + timedelta(seconds=2),
            completion_start_time=start + timedelta(milliseconds=1500),
        ),
        failed(requested_model=model, start_time=start),
    ]
    with serving(OtlpMetricsReceiver()) as collector:
        env = {"OTEL_EXPORTER": "otlp_http", "OTEL_EXPORTER_OTLP_ENDPOINT": collector.base_url}
        config = parse_config({"litellm_settings": {"callbacks": ["otel"]}})
        app = create_app(_settings(provisioned), config, env)
        async with LifespanManager(app, startup_timeout=30):
            for ev in calls:
                await publish_event(js, ev)
            await _eventually(
                lambda: (
                    _total(collector.histogram(DURATION, **{"gen_ai.request.model": model}))[0]
                    == len(calls)
                ),
                "the duration of every call",
            )
            await _eventually(
                lambda: len(collector.by_attribute("gen_ai.request.model", model)) == len(calls),
                "the spans",
            )

    common = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": model,
        "server.address": "api.openai.com",
        "server.port": 443,
    }
    ok = {**common, "gen_ai.response.model": "gpt-4o-2024-08-06"}

    inputs = collector.histogram(TOKENS, **common, **{"gen_ai.token.type": "input"})
    assert {frozenset(p.attributes.items()) for p in inputs} == {
        frozenset({**ok, "gen_ai.token.type": "input"}.items())
    }  # no key, user, team or request id: the metric's cardinality stays the models'
    count, total, buckets = _total(inputs)
    assert (count, total) == (3, 9 + 9 + 100)
    # The conventions' boundaries 1, 4, 16, 64, 256, ...: 9 in (4, 16], 100 in (64, 256].
    assert inputs[0].explicit_bounds[:5] == [1, 4, 16, 64, 256]
    assert buckets[2] == 2
    assert buckets[4] == 1
    assert sum(buckets) == 3
    outputs = collector.histogram(TOKENS, **common, **{"gen_ai.token.type": "output"})
    count, total, buckets = _total(outputs)
    assert (count, total) == (3, 8 + 8 + 3000)
    assert buckets[2] == 2
    assert buckets[6] == 1
    assert all(p.unit == "{token}" and p.delta for p in inputs + outputs)
    assert all(p.resource["service.name"] == "tollgate" for p in inputs)
    assert all(p.scope == "tollgate.exporter" for p in inputs)

    durations = collector.histogram(DURATION, **common)
    ok_d = [p for p in durations if "error.type" not in p.attributes]
    count, total, _ = _total(ok_d)
    assert count == 3
    assert abs(total - (0.85 + 0.85 + 2.0)) < 1e-9
    assert all(p.attributes == ok for p in ok_d)
    (refused,) = [p for p in durations if "error.type" in p.attributes]
    assert refused.attributes == {**common, "error.type": "RateLimitError"}
    assert (refused.count, refused.sum, refused.unit) == (1, 0.85, "s")
    assert min(p.min for p in ok_d) == 0.85
    assert max(p.max for p in ok_d) == 2.0

    # Time to first token: completed calls only, from completion_start_time.
    ttft = collector.histogram(TTFT, **common)
    count, total, buckets = _total(ttft)
    assert count == 3
    assert abs(total - (0.3 + 0.3 + 1.5)) < 1e-9
    assert ttft[0].explicit_bounds[:4] == [0.01, 0.02, 0.04, 0.08]
    assert buckets[5] == 2
    assert buckets[8] == 1
    # The batch's window: from its first call's start to its last call's end.
    assert all(p.start_time_unix_nano <= p.time_unix_nano for p in ttft)


async def test_metrics_can_be_turned_off_and_spans_still_flow(
    provisioned: StackUrls, js: JetStreamContext
) -> None:
    model = f"gpt-nometrics-{uuid.uuid4().hex[:8]}"
    with serving(OtlpMetricsReceiver()) as collector:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.base_url,
            "OTEL_METRICS_EXPORTER": "none",
        }
        config = parse_config({"litellm_settings": {"callbacks": ["otel"]}})
        app = create_app(_settings(provisioned), config, env)
        async with LifespanManager(app, startup_timeout=30):
            await publish_event(js, completed(requested_model=model))
            await _eventually(
                lambda: bool(collector.by_attribute("gen_ai.request.model", model)), "the span"
            )
    assert not collector.histogram(TOKENS, **{"gen_ai.request.model": model})
