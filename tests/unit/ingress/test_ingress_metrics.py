"""LiteLLM's metrics as ingress records them: label values (not only names), the label and
metric choice of prometheus_metrics_config, custom metadata labels and tags, end_user off
by default, the series ceiling, deployment state, and refusals counted exactly while their
events are sampled."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY, CollectorRegistry

from support.builders import key_state
from tollgate_ingress.metrics import COMPLETE_OUTAGE, Recorder
from tollgate_ingress.refusals import RefusalSampler, exception_class
from tollgate_ingress.routing import deployments_from
from tollgate_ingress.service import Answer, Gateway, StateViews
from tollgate_shared import litellm_metrics as lm
from tollgate_shared.config import LitellmSettings, TollgateConfig
from tollgate_shared.events import LlmRequestCompleted, LlmRequestFailed
from tollgate_shared.state import hash_key

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _completed(**kw: Any) -> LlmRequestCompleted:
    base: dict[str, Any] = {
        "producer": "ingress",
        "request_id": "r1",
        "call_type": "acompletion",
        "api_key_hash": "h1",
        "key_alias": "alias-1",
        "team_id": "team-a",
        "team_alias": "Team A",
        "user_id": "u1",
        "end_user": "customer-9",
        "requested_model": "gpt-4o",
        "model_group": "gpt-4o",
        "model_id": "dep-1",
        "model": "gpt-4o-2024",
        "custom_llm_provider": "openai",
        "api_base": "http://up",
        "start_time": T0,
        "end_time": T0 + timedelta(seconds=1),
        "completion_start_time": T0 + timedelta(milliseconds=250),
        "total_latency_ms": 1000.0,
        "upstream_latency_ms": 998.0,
        "overhead_latency_ms": 2.0,
        "prompt_tokens": 10,
        "completion_tokens": 20,
        "total_tokens": 30,
        "spend": Decimal("0.5"),
        "metadata": {"environment": "prod", "deep": {"team": "x"}},
        "tags": ["vip"],
    }
    base.update(kw)
    return LlmRequestCompleted(**base)


def _value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def _labels_of(name: str) -> list[dict[str, str]]:
    return [s.labels for fam in REGISTRY.collect() for s in fam.samples if s.name == name]


def test_a_completed_call_lands_in_every_family_with_litellms_label_values() -> None:
    rec = Recorder(lm.MetricsOptions(max_series=100))
    rec.record(_completed(request_id="a1", api_key_hash="h-complete"))
    who = {
        "hashed_api_key": "h-complete",
        "api_key_alias": "alias-1",
        "team": "team-a",
        "team_alias": "Team A",
        "user": "u1",
    }
    # end_user stays "None" unless enable_end_user_cost_tracking_prometheus_only.
    total = [
        x
        for x in _labels_of("litellm_proxy_total_requests_metric_total")
        if x["hashed_api_key"] == "h-complete"
    ]
    assert total == [
        {
            **who,
            "end_user": "None",
            "requested_model": "gpt-4o",
            "status_code": "200",
            "user_email": "None",
            "route": "/chat/completions",
            "client_ip": "None",
            "user_agent": "None",
            "model_id": "dep-1",
        }
    ]
    tokens = [
        x
        for x in _labels_of("litellm_total_tokens_metric_total")
        if x["hashed_api_key"] == "h-complete"
    ]
    assert tokens[0]["requested_model"] == "gpt-4o"
    assert tokens[0]["model"] == "gpt-4o-2024"
    labels = {**tokens[0]}
    assert _value("litellm_total_tokens_metric_total", **labels) == 30
    assert _value("litellm_input_tokens_metric_total", **labels) == 10
    assert _value("litellm_output_tokens_metric_total", **labels) == 20
    overhead = [
        x
        for x in _labels_of("litellm_overhead_latency_metric_count")
        if x["hashed_api_key"] == "h-complete"
    ]
    assert overhead == [
        {
            "model_group": "gpt-4o",
            "api_provider": "openai",
            "api_base": "http://up",
            "litellm_model_name": "gpt-4o-2024",
            "hashed_api_key": "h-complete",
            "api_key_alias": "alias-1",
            "model_id": "dep-1",
        }
    ]
    ttft = [
        x
        for x in _labels_of("litellm_llm_api_time_to_first_token_metric_sum")
        if x["hashed_api_key"] == "h-complete"
    ]
    assert _value("litellm_llm_api_time_to_first_token_metric_sum", **ttft[0]) == 0.25
    per_token = [
        x
        for x in _labels_of("litellm_deployment_latency_per_output_token_sum")
        if x["hashed_api_key"] == "h-complete"
    ]
    assert _value(
        "litellm_deployment_latency_per_output_token_sum", **per_token[0]
    ) == pytest.approx(0.0499)
    # LiteLLM's buckets, not prometheus_client's defaults.
    bucket_bounds = {
        x["le"]
        for x in _labels_of("litellm_request_total_latency_metric_bucket")
        if x["hashed_api_key"] == "h-complete"
    }
    assert {"0.00625", "0.0125", "300.0", "+Inf"} <= bucket_bounds


def test_end_user_is_a_label_only_when_enabled() -> None:
    rec = Recorder(lm.MetricsOptions(end_user=True, max_series=100))
    rec.record(_completed(api_key_hash="h-enduser"))
    rows = [
        x for x in _labels_of("litellm_spend_metric_total") if x["hashed_api_key"] == "h-enduser"
    ]
    assert [r["end_user"] for r in rows] == ["customer-9"]
    assert _value("litellm_spend_metric_total", **rows[0]) == 0.5


def test_custom_metadata_labels_and_tags_are_labels_of_the_request_metrics() -> None:
    settings = LitellmSettings(
        custom_prometheus_metadata_labels=[
            "metadata.environment",
            "metadata.deep.team",
            "metadata.absent",
        ],
        custom_prometheus_tags=["vip", "batch"],
    )
    rec = Recorder(lm.MetricsOptions.from_settings(settings))
    rec.record(_completed(api_key_hash="h-custom"))
    rows = [
        x
        for x in _labels_of("litellm_proxy_total_requests_metric_total")
        if x["hashed_api_key"] == "h-custom"
    ]
    assert len(rows) == 1
    assert rows[0]["metadata_environment"] == "prod"
    assert rows[0]["metadata_deep_team"] == "x"
    assert rows[0]["metadata_absent"] == "None"
    assert (rows[0]["tag_vip"], rows[0]["tag_batch"]) == ("true", "false")
    # Not on the deployment-level gauges (one series per deployment, not per call).
    assert lm.MetricsOptions.from_settings(settings).labels_of(
        lm.BY_NAME["litellm_deployment_state"]
    ) == (
        "litellm_model_name",
        "model_id",
        "api_base",
        "api_provider",
    )


def test_prometheus_metrics_config_chooses_metrics_and_their_labels() -> None:
    settings = LitellmSettings.model_validate(
        {
            "prometheus_metrics_config": [
                {
                    "group": "proxy",
                    "metrics": ["litellm_proxy_total_requests_metric"],
                    "include_labels": ["hashed_api_key", "requested_model", "status_code"],
                }
            ]
        }
    )
    registry = CollectorRegistry()
    m = lm.install(lm.MetricsOptions.from_settings(settings), "ingress", registry)
    m["litellm_proxy_total_requests_metric"].of(
        {"hashed_api_key": "h", "requested_model": "m", "status_code": "200", "team": "t"}
    ).inc()
    m["litellm_spend_metric"].of({}).inc(5)  # not chosen: recorded nowhere
    names = {f.name for f in registry.collect()}
    assert "litellm_proxy_total_requests_metric" in names
    assert "litellm_spend_metric" not in names
    assert (
        registry.get_sample_value(
            "litellm_proxy_total_requests_metric_total",
            {"hashed_api_key": "h", "requested_model": "m", "status_code": "200"},
        )
        == 1
    )


def test_new_series_past_the_ceiling_are_dropped_and_counted() -> None:
    registry = CollectorRegistry()
    m = lm.install(lm.MetricsOptions(max_series=3), "ingress", registry)
    fam = m["litellm_remaining_requests"]
    base = dict.fromkeys(fam.labels or (), "x")
    for i in range(10):
        fam.of({**base, "hashed_api_key": f"k{i}"}).set(i)
    fam.of({**base, "hashed_api_key": "k0"}).set(42)  # an existing series still updates
    assert fam.series == 3
    assert (
        registry.get_sample_value("tollgate_metric_series_dropped_total", {"metric": fam.spec.name})
        == 7
    )
    assert (
        registry.get_sample_value("litellm_remaining_requests", {**base, "hashed_api_key": "k0"})
        == 42
    )


def test_random_user_values_do_not_grow_metrics() -> None:
    rec = Recorder(lm.MetricsOptions(max_series=100))
    before = rec.m["litellm_proxy_total_requests_metric"].series
    for i in range(500):
        rec.record(_completed(end_user=f"random-{i}", api_key_hash="h-flood"))
    assert rec.m["litellm_proxy_total_requests_metric"].series == before + 1


def test_deployment_state_and_cooldowns_have_their_deployment_labels() -> None:
    cfg = TollgateConfig.model_validate(
        {
            "model_list": [
                {
                    "model_name": "m",
                    "litellm_params": {
                        "model": "openai/up-model",
                        "api_base": "http://dep",
                        "rpm": 60,
                        "tpm": 1000,
                    },
                    "model_info": {"id": "state-dep"},
                }
            ]
        }
    )
    dep = deployments_from(cfg.model_list, [])["m"][0]
    rec = Recorder(lm.MetricsOptions(max_series=100))
    rec.deployments([dep])
    v = {
        "litellm_model_name": "up-model",
        "model_id": "state-dep",
        "api_base": "http://dep",
        "api_provider": "openai",
    }
    assert _value("litellm_deployment_state", **v) == 0
    assert _value("litellm_deployment_rpm_limit", **v) == 60
    assert _value("litellm_deployment_tpm_limit", **v) == 1000
    rec.cooled_down(dep, 503)
    assert _value("litellm_deployment_state", **v) == COMPLETE_OUTAGE
    assert _value("litellm_deployment_cooled_down_total", **v, exception_status="503") == 1
    rec.deployments([dep])  # a model refresh does not hide an outage
    assert _value("litellm_deployment_state", **v) == COMPLETE_OUTAGE


def test_identical_refusals_are_sampled_and_the_next_event_says_how_many() -> None:
    s = RefusalSampler(window_s=1.0)
    key = ("127.0.0.1", None, 401, "invalid_key", "m")
    assert s.admit(key, 0.0) == 0
    assert [s.admit(key, 0.1 * i) for i in range(1, 6)] == [None] * 5
    assert s.admit(key, 1.5) == 5
    assert s.admit(("127.0.0.1", None, 429, "rate_limit_exceeded", "m"), 1.6) == 0
    assert exception_class(400, "budget_exceeded") == "BudgetExceededError"
    assert exception_class(401, "invalid_key") == "AuthenticationError"
    assert exception_class(429, None) == "RateLimitError"


class _View(dict[str, Any]):
    """A KvView's reading side over a dict (items() is the whole current view)."""

    def items(self) -> Any:  # type: ignore[override]
        return dict(self)


class _Publisher:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def emit(self, event: Any) -> None:
        self.events.append(event)


def test_a_refused_call_is_a_failed_event_and_counted_each_time() -> None:
    key = "sk-metrics-refusal"
    h = hash_key(key)
    views = StateViews(
        keys=_View({h: key_state(token=h, key_alias="refused", models=["other"])}),  # type: ignore[arg-type]
        teams=_View(),  # type: ignore[arg-type]
        users=_View(),  # type: ignore[arg-type]
        models=_View(),  # type: ignore[arg-type]
        spend=_View(),  # type: ignore[arg-type]
    )
    cfg = TollgateConfig.model_validate(
        {"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/m"}}]}
    )
    pub = _Publisher()
    gw = Gateway(cfg, "sk-master", pub, None, views, 1.0)  # type: ignore[arg-type]
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})

    async def call(headers: dict[str, str]) -> Answer:
        result = await gw.answer("/v1/chat/completions", body, headers, "10.9.9.9", 0.0)
        assert isinstance(result, Answer)
        assert result.after is not None
        result.after()
        return result

    async def scenario() -> list[int]:
        statuses = []
        for _ in range(3):
            statuses.append((await call({"authorization": "Bearer sk-dead"})).status)
        statuses.append((await call({"authorization": f"Bearer {key}"})).status)
        return statuses

    assert asyncio.run(scenario()) == [401, 401, 401, 403]
    # Three identical dead-key refusals: one event (sampled), three counts.
    failed = [e for e in pub.events if isinstance(e, LlmRequestFailed)]
    assert [(e.status_code, e.error_class, e.requested_model) for e in failed] == [
        (401, "AuthenticationError", "m"),
        (403, "PermissionDeniedError", "m"),
    ]
    assert failed[1].api_key_hash == h
    assert failed[1].key_alias == "refused"
    dead = [
        x
        for x in _labels_of("litellm_proxy_failed_requests_metric_total")
        if x["client_ip"] == "10.9.9.9" and x["exception_status"] == "401"
    ]
    assert dead
    assert dead[0]["exception_class"] == "AuthenticationError"
    assert dead[0]["hashed_api_key"] == "None"
    assert dead[0]["requested_model"] == "m"
    assert _value("litellm_proxy_failed_requests_metric_total", **dead[0]) == 3
    total = [
        x
        for x in _labels_of("litellm_proxy_total_requests_metric_total")
        if x["client_ip"] == "10.9.9.9" and x["status_code"] == "401"
    ]
    assert _value("litellm_proxy_total_requests_metric_total", **total[0]) == 3


def test_budget_gauges_come_from_the_ledgers_totals_with_litellms_labels() -> None:
    # The ledger owns the totals, so it exports these (tested here beside the catalog).
    from support.builders import team_state
    from tollgate_ledger.budgets import BudgetBook
    from tollgate_ledger.metrics import BudgetGauges
    from tollgate_shared.state import SpendState

    book = BudgetBook()
    book.keys = _View(  # type: ignore[assignment]
        {"kh": key_state(token="kh", key_alias="k-alias", max_budget=Decimal("10"))}
    )
    book.teams = _View(  # type: ignore[assignment]
        {
            "tm": team_state(
                team_id="tm", team_alias="T", max_budget=Decimal("5"), budget_duration="1d"
            )
        }
    )
    book.users = _View()  # type: ignore[assignment]
    now = datetime(2026, 3, 1, 18, tzinfo=UTC)
    spend = _View(
        {
            "key.kh": SpendState(entity="key", entity_id="kh", spend=Decimal("2.5")),
            "team.tm": SpendState(entity="team", entity_id="tm", spend=Decimal("1")),
        }
    )
    registry = CollectorRegistry()
    registry.register(BudgetGauges(book, spend, lm.MetricsOptions(), clock=lambda: now))  # type: ignore[arg-type]
    key = {"hashed_api_key": "kh", "api_key_alias": "k-alias"}
    team = {"team": "tm", "team_alias": "T"}
    assert registry.get_sample_value("litellm_api_key_max_budget_metric", key) == 10
    assert registry.get_sample_value("litellm_remaining_api_key_budget_metric", key) == 7.5
    assert registry.get_sample_value("litellm_api_key_budget_remaining_hours_metric", key) is None
    assert registry.get_sample_value("litellm_remaining_team_budget_metric", team) == 4
    assert registry.get_sample_value("litellm_team_budget_remaining_hours_metric", team) == 6


def test_the_ceiling_counts_samples_so_histograms_stay_bounded() -> None:
    rec = Recorder(lm.MetricsOptions(end_user=True, max_series=400))
    latency = rec.m["litellm_request_total_latency_metric"]
    # LiteLLM's 35 buckets, +Inf, _sum, _count and _created: 39 samples per label set.
    assert latency.cost == len(lm.LATENCY_BUCKETS) + 4
    assert rec.m["litellm_spend_metric"].cost == 2  # _total and _created
    assert rec.m["litellm_deployment_state"].cost == 1
    users = 1000
    for i in range(users):
        rec.record(_completed(end_user=f"random-{i}", api_key_hash="h-ceiling"))
    assert latency.series == 400 // latency.cost
    dropped = REGISTRY.get_sample_value(
        "tollgate_metric_series_dropped_total", {"metric": latency.spec.name}
    )
    assert dropped == users - latency.series
    per_family: dict[str, int] = {}
    for fam in REGISTRY.collect():
        if fam.name.startswith("litellm_"):
            per_family[fam.name] = len(fam.samples)
    assert per_family["litellm_request_total_latency_metric"] <= 400
    assert max(per_family.values()) <= 400, per_family
    # The series that were kept carry the users' values.
    kept = {
        s.labels["end_user"]
        for s in _histogram_counts(latency.spec.name)
        if s.labels.get("hashed_api_key") == "h-ceiling"
    }
    assert kept == {f"random-{i}" for i in range(latency.series)}


def _histogram_counts(name: str) -> list[Any]:
    return [s for fam in REGISTRY.collect() for s in fam.samples if s.name == name + "_count"]
