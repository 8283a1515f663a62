"""LiteLLM's Prometheus metric catalog: names, types, labels and buckets, and the bounded
families that export them, so LiteLLM's dashboards and alert rules keep working.

Each metric has one owner: request-level metrics are recorded by the ingress replica that
served the call (Prometheus sums the replicas); budget gauges by the ledger, which owns
the totals. `prometheus_metrics_config` chooses metrics and labels; a ceiling on series per
metric drops (and counts) new label sets instead of growing `/metrics` without bound. The
ceiling counts series as Prometheus does, one per exposed sample: a label set of a
histogram costs each bucket, `_sum`, `_count` (and `_created`), so histograms stay bounded.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Literal

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.registry import CollectorRegistry

from tollgate_shared.config import LitellmSettings
from tollgate_shared.runtime import metrics_dir

Kind = Literal["counter", "gauge", "histogram"]
Owner = Literal["ingress", "ledger"]
# How a gauge of several worker processes of one service is exposed (prometheus_client's
# multiprocess modes): `livemax` the worst of the running workers (deployment state, one
# config's limits), `livemostrecent` the latest set by any running worker (what the
# upstream last said). A dead worker's gauges leave the result; counters and histograms
# are summed, a dead worker's counts included.
WorkersGauge = Literal["livemax", "livemostrecent"]

# LiteLLM's LATENCY_BUCKETS (prometheus_client appends +Inf itself).
LATENCY_BUCKETS: tuple[float, ...] = (
    0.005,
    0.00625,
    0.0125,
    0.025,
    0.05,
    0.1,
    0.5,
    1.0,
    1.5,
    2.0,
    2.5,
    3.0,
    3.5,
    4.0,
    4.5,
    5.0,
    5.5,
    6.0,
    6.5,
    7.0,
    7.5,
    8.0,
    8.5,
    9.0,
    9.5,
    10.0,
    15.0,
    20.0,
    25.0,
    30.0,
    60.0,
    120.0,
    180.0,
    240.0,
    300.0,
)
# prometheus_client's defaults, which LiteLLM keeps for latency per output token.
DEFAULT_BUCKETS: tuple[float, ...] = Histogram.DEFAULT_BUCKETS[:-1]


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: Kind
    doc: str
    labels: tuple[str, ...]
    owner: Owner = "ingress"
    # Whether custom metadata labels and tags are added (the metrics of one call).
    per_request: bool = True
    buckets: Literal["latency", "default"] = "latency"
    workers: WorkersGauge = "livemostrecent"


_WHO = ("end_user", "hashed_api_key", "api_key_alias", "team", "team_alias", "user")
_DEP = ("litellm_model_name", "model_id", "api_base", "api_provider")
_KEY_TEAM = ("hashed_api_key", "api_key_alias", "team", "team_alias")
_CLIENT = ("client_ip", "user_agent")
_UPSTREAM = ("model_group", "api_provider", "api_base", "litellm_model_name")


def _counter(name: str, doc: str, labels: Sequence[str], **kw: Any) -> MetricSpec:
    return MetricSpec(name, "counter", doc, tuple(labels), **kw)


def _gauge(name: str, doc: str, labels: Sequence[str], **kw: Any) -> MetricSpec:
    return MetricSpec(name, "gauge", doc, tuple(labels), **kw)


def _histogram(name: str, doc: str, labels: Sequence[str], **kw: Any) -> MetricSpec:
    return MetricSpec(name, "histogram", doc, tuple(labels), **kw)


CATALOG: tuple[MetricSpec, ...] = (
    # -- proxy level (every call, refusals included) ------------------------------
    _counter(
        "litellm_proxy_total_requests_metric",
        "Total number of requests made to the proxy server - track number of client side requests",
        [*_WHO, "requested_model", "status_code", "user_email", "route", *_CLIENT, "model_id"],
    ),
    _counter(
        "litellm_proxy_failed_requests_metric",
        "Total number of failed responses from proxy - the client did not get a success "
        "response from litellm proxy",
        [
            *_WHO,
            "requested_model",
            "user_email",
            "exception_status",
            "exception_class",
            "route",
            *_CLIENT,
            "model_id",
        ],
    ),
    _histogram(
        "litellm_request_total_latency_metric",
        "Total latency (seconds) for a request to LiteLLM",
        [*_WHO, "requested_model", "model", "model_id"],
    ),
    _histogram(
        "litellm_llm_api_latency_metric",
        "Total latency (seconds) for a models LLM API call",
        ["model", *_KEY_TEAM, "requested_model", "end_user", "user", "model_id"],
    ),
    _histogram(
        "litellm_llm_api_time_to_first_token_metric",
        "Time to first token for a models LLM API call",
        ["model", *_KEY_TEAM, "requested_model", "end_user", "user", "model_id"],
    ),
    _histogram(
        "litellm_overhead_latency_metric",
        "Latency overhead (seconds) added by the proxy",
        [*_UPSTREAM, "hashed_api_key", "api_key_alias", "model_id"],
    ),
    # -- spend and tokens ---------------------------------------------------------
    _counter(
        "litellm_requests_metric",
        "Total number of LLM calls to litellm - track total per API Key, team, user",
        [*_WHO, "model", "user_email", *_CLIENT, "model_id"],
    ),
    _counter(
        "litellm_spend_metric",
        "Total spend on LLM requests",
        [*_WHO, "model", "user_email", *_CLIENT, "model_id"],
    ),
    _counter(
        "litellm_total_tokens_metric",
        "Total number of input + output tokens from LLM requests",
        [*_WHO, "model", "user_email", "requested_model", "model_id"],
    ),
    _counter(
        "litellm_input_tokens_metric",
        "Total number of input tokens from LLM requests",
        [*_WHO, "model", "user_email", "requested_model", "model_id"],
    ),
    _counter(
        "litellm_output_tokens_metric",
        "Total number of output tokens from LLM requests",
        [*_WHO, "model", "user_email", "requested_model", "model_id"],
    ),
    _counter(
        "litellm_llm_api_failed_requests_metric",
        "deprecated - use litellm_proxy_failed_requests_metric",
        [*_WHO, "model", "model_id"],
    ),
    # -- deployments ----------------------------------------------------------------
    _counter(
        "litellm_deployment_success_responses",
        "LLM Deployment Analytics - Total number of successful LLM API calls via litellm",
        ["requested_model", *_DEP, *_KEY_TEAM, *_CLIENT],
    ),
    _counter(
        "litellm_deployment_failure_responses",
        "LLM Deployment Analytics - Total number of failed LLM API calls for a specific LLM "
        "deployment. exception_status is the status of the exception from the llm api",
        ["requested_model", *_DEP, "exception_status", "exception_class", *_KEY_TEAM, *_CLIENT],
    ),
    _counter(
        "litellm_deployment_total_requests",
        "LLM Deployment Analytics - Total number of LLM API calls via litellm - success + failure",
        ["requested_model", *_DEP, *_KEY_TEAM, *_CLIENT],
    ),
    _histogram(
        "litellm_deployment_latency_per_output_token",
        "LLM Deployment Analytics - Latency per output token",
        [*_DEP, *_KEY_TEAM],
        buckets="default",
    ),
    _gauge(
        "litellm_deployment_state",
        "LLM Deployment Analytics - The state of the deployment: 0 = healthy, 1 = partial "
        "outage, 2 = complete outage",
        _DEP,
        per_request=False,
        workers="livemax",
    ),
    _counter(
        "litellm_deployment_cooled_down",
        "LLM Deployment Analytics - Number of times a deployment has been cooled down by "
        "LiteLLM load balancing logic. exception_status is the status of the exception that "
        "caused the deployment to be cooled down",
        [*_DEP, "exception_status"],
        per_request=False,
    ),
    _gauge(
        "litellm_deployment_tpm_limit",
        "Deployment TPM limit found in config",
        _DEP,
        per_request=False,
        workers="livemax",
    ),
    _gauge(
        "litellm_deployment_rpm_limit",
        "Deployment RPM limit found in config",
        _DEP,
        per_request=False,
        workers="livemax",
    ),
    _counter(
        "litellm_deployment_successful_fallbacks",
        "LLM Deployment Analytics - Number of successful fallback requests from primary "
        "model -> fallback model",
        [
            "requested_model",
            "fallback_model",
            *_KEY_TEAM,
            "exception_status",
            "exception_class",
            "model_id",
        ],
    ),
    _counter(
        "litellm_deployment_failed_fallbacks",
        "LLM Deployment Analytics - Number of failed fallback requests from primary model -> "
        "fallback model",
        [
            "requested_model",
            "fallback_model",
            *_KEY_TEAM,
            "exception_status",
            "exception_class",
            "model_id",
        ],
    ),
    _gauge(
        "litellm_remaining_requests",
        "LLM Deployment Analytics - remaining requests for model, returned from LLM API Provider",
        [*_UPSTREAM, "hashed_api_key", "api_key_alias", "model_id"],
    ),
    _gauge(
        "litellm_remaining_tokens",
        "remaining tokens for model, returned from LLM API Provider",
        [*_UPSTREAM, "hashed_api_key", "api_key_alias", "model_id"],
    ),
    # -- budgets (the ledger owns the totals) ---------------------------------------
    _gauge(
        "litellm_remaining_team_budget_metric",
        "Remaining budget for team",
        ["team", "team_alias"],
        owner="ledger",
        per_request=False,
    ),
    _gauge(
        "litellm_team_max_budget_metric",
        "Maximum budget set for team",
        ["team", "team_alias"],
        owner="ledger",
        per_request=False,
    ),
    _gauge(
        "litellm_team_budget_remaining_hours_metric",
        "Remaining hours for team budget to be reset",
        ["team", "team_alias"],
        owner="ledger",
        per_request=False,
    ),
    _gauge(
        "litellm_remaining_api_key_budget_metric",
        "Remaining budget for api key",
        ["hashed_api_key", "api_key_alias"],
        owner="ledger",
        per_request=False,
    ),
    _gauge(
        "litellm_api_key_max_budget_metric",
        "Maximum budget set for api key",
        ["hashed_api_key", "api_key_alias"],
        owner="ledger",
        per_request=False,
    ),
    _gauge(
        "litellm_api_key_budget_remaining_hours_metric",
        "Remaining hours for api key budget to be reset",
        ["hashed_api_key", "api_key_alias"],
        owner="ledger",
        per_request=False,
    ),
    _gauge(
        "litellm_remaining_user_budget_metric",
        "Remaining budget for user",
        ["user"],
        owner="ledger",
        per_request=False,
    ),
    _gauge(
        "litellm_user_max_budget_metric",
        "Maximum budget set for user",
        ["user"],
        owner="ledger",
        per_request=False,
    ),
    _gauge(
        "litellm_user_budget_remaining_hours_metric",
        "Remaining hours for user budget to be reset",
        ["user"],
        owner="ledger",
        per_request=False,
    ),
)
BY_NAME: dict[str, MetricSpec] = {s.name: s for s in CATALOG}

# Families on LiteLLM's page that Tollgate does not export, and why.
NOT_APPLICABLE: dict[str, str] = {
    "litellm_remaining_api_key_requests_for_model": "Tollgate has no per-model limits on a key",
    "litellm_remaining_api_key_tokens_for_model": "Tollgate has no per-model limits on a key",
    "litellm_remaining_org_budget_metric": "Tollgate has no organizations",
    "litellm_org_max_budget_metric": "Tollgate has no organizations",
    "litellm_org_budget_remaining_hours_metric": "Tollgate has no organizations",
    "litellm_provider_remaining_budget_metric": "Tollgate has no provider budgets",
    "litellm_cache_hits_metric": "Tollgate has no response cache",
    "litellm_cache_misses_metric": "Tollgate has no response cache",
    "litellm_cached_tokens_metric": "Tollgate has no response cache",
    "litellm_request_queue_time_seconds": "Tollgate has no request queue",
    "litellm_guardrail_latency_seconds": "Tollgate has no guardrails",
    "litellm_guardrail_errors_total": "Tollgate has no guardrails",
    "litellm_guardrail_requests_total": "Tollgate has no guardrails",
    "litellm_pod_lock_manager_size": "spend is event-sourced (see the ledger's metrics)",
    "litellm_in_memory_spend_update_queue_size": "spend is event-sourced (spool depth instead)",
    "litellm_redis_spend_update_queue_size": "spend is event-sourced (spool depth instead)",
    "litellm_in_memory_daily_spend_update_queue_size": "spend is event-sourced",
    "litellm_redis_daily_spend_update_queue_size": "spend is event-sourced",
    "litellm_callback_logging_failures_metric": "the exporter counts its sinks' failures",
}

_LABEL_NAME = re.compile(r"[^a-zA-Z0-9_]")


def label_name(raw: str) -> str:
    """A valid Prometheus label name from a config entry (`metadata.env` -> `metadata_env`)."""
    out = _LABEL_NAME.sub("_", raw) or "_"
    return out if re.match(r"[a-zA-Z_]", out[0]) else "_" + out


@dataclass(frozen=True)
class MetricsOptions:
    """What litellm_settings says about metrics, read once at start."""

    # Metric name -> its labels (None: its default labels); None: every metric.
    include: Mapping[str, tuple[str, ...] | None] | None = None
    end_user: bool = False
    metadata_labels: tuple[str, ...] = ()  # config entries, `metadata.environment`
    tags: tuple[str, ...] = ()
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    max_series: int = 2000
    require_auth: bool = False

    @classmethod
    def from_settings(cls, s: LitellmSettings) -> MetricsOptions:
        include: dict[str, tuple[str, ...] | None] | None = None
        if s.prometheus_metrics_config is not None:
            include = {}
            for group in s.prometheus_metrics_config:
                for name in group.metrics:
                    include[name] = (
                        tuple(group.include_labels) if group.include_labels is not None else None
                    )
        return cls(
            include=include,
            end_user=s.enable_end_user_cost_tracking_prometheus_only,
            metadata_labels=tuple(s.custom_prometheus_metadata_labels),
            tags=tuple(s.custom_prometheus_tags),
            buckets=tuple(s.prometheus_latency_buckets or LATENCY_BUCKETS),
            max_series=s.prometheus_max_series_per_metric,
            require_auth=s.require_auth_for_metrics_endpoint,
        )

    @property
    def custom_label_names(self) -> tuple[str, ...]:
        return tuple(label_name(m) for m in self.metadata_labels) + tuple(
            label_name(f"tag_{t}") for t in self.tags
        )

    def labels_of(self, spec: MetricSpec) -> tuple[str, ...] | None:
        """The labels `spec` is exported with, or None when it is not exported."""
        labels = spec.labels + (self.custom_label_names if spec.per_request else ())
        if self.include is None:
            return labels
        # LiteLLM's config names a metric by its exposed name or, for the few whose Python
        # attribute differs (`litellm_remaining_requests_metric`), by that attribute.
        key = next((k for k in (spec.name, spec.name + "_metric") if k in self.include), None)
        if key is None:
            return None
        chosen = self.include[key]
        return labels if chosen is None else tuple(x for x in labels if x in chosen)

    def custom_values(self, metadata: Mapping[str, Any], tags: Sequence[str]) -> dict[str, str]:
        """The custom label values of one call, from its metadata and tags."""
        out: dict[str, str] = {}
        for raw in self.metadata_labels:
            value: Any = {"metadata": metadata}
            for part in raw.split("."):
                value = value.get(part) if isinstance(value, Mapping) else None
            out[label_name(raw)] = "None" if value is None else str(value)
        for tag in self.tags:
            out[label_name(f"tag_{tag}")] = "true" if tag in tags else "false"
        return out


class _Noop:
    """What a disabled family, or a series past the ceiling, records into."""

    def inc(self, amount: float = 1) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass

    def set(self, value: float) -> None:
        pass


NOOP: Any = _Noop()


def samples_per_label_set(metric: Any, labels: Sequence[str]) -> int:
    """How many samples (Prometheus series) one label set of `metric` exposes, counted on
    an unregistered twin: 1 for a gauge, 2 for a counter (`_total`, `_created`), each
    bucket, `_sum`, `_count` and `_created` for a histogram."""
    metric.labels(*("" for _ in labels))
    return sum(len(f.samples) for f in metric.collect())


def multiprocess_samples_per_label_set(kind: Kind, buckets: Sequence[float]) -> int:
    """The same for a worker of several (prometheus_client's multiprocess mode), where a
    twin's series would be written to the shared files and exposed, and no `_created` is:
    1 for a counter or a gauge, each bucket (+Inf included), `_sum` and `_count` for a
    histogram."""
    if kind != "histogram":
        return 1
    return len(buckets) + (0 if buckets and buckets[-1] == float("inf") else 1) + 2


@dataclass
class Family:
    """One metric family: label values picked from a call's mapping of every label, each
    series' child kept (no per-call label validation), new series past the ceiling
    dropped and counted. `max_series` counts samples: a label set costs `cost` of them."""

    spec: MetricSpec
    labels: tuple[str, ...] | None
    metric: Any
    max_series: int
    dropped: Any
    cost: int = 1
    _children: dict[tuple[str, ...], Any] = field(default_factory=dict)
    _pick: Callable[[Mapping[str, str]], tuple[str, ...]] | None = None

    def __post_init__(self) -> None:
        if self.labels:
            getter = itemgetter(*self.labels)
            if len(self.labels) == 1:
                self._pick = lambda v: (getter(v),)
            else:
                self._pick = getter

    def of(self, values: Mapping[str, str]) -> Any:
        """The child for this call's labels (NOOP when disabled or over the ceiling)."""
        pick = self._pick
        if pick is None:
            return NOOP if self.metric is None else self.metric
        key = pick(values)
        child = self._children.get(key)
        if child is None:
            if self.metric is None:
                return NOOP
            if (len(self._children) + 1) * self.cost > self.max_series:
                self.dropped.inc()
                return NOOP
            child = self._children[key] = self.metric.labels(*key)
        return child

    def known(self, values: Mapping[str, str]) -> bool:
        """Whether this label set already has a series."""
        return self._pick is not None and self._pick(values) in self._children

    @property
    def series(self) -> int:
        """Label sets exported."""
        return len(self._children)

    @property
    def samples(self) -> int:
        """Samples exported: what the ceiling counts."""
        return len(self._children) * self.cost


class Metrics:
    """The families one service exports, registered in one registry."""

    def __init__(self, options: MetricsOptions, owner: Owner, registry: CollectorRegistry) -> None:
        self.options = options
        self.registry = registry
        self._collectors: list[Any] = []
        self.dropped_total = self._register(
            Counter(
                "tollgate_metric_series_dropped",
                "New label sets not exported because their metric reached "
                "prometheus_max_series_per_metric",
                ["metric"],
                registry=None,
            )
        )
        self.families: dict[str, Family] = {}
        for spec in CATALOG:
            if spec.owner != owner:
                continue
            labels = options.labels_of(spec)
            metric = None if labels is None else self._register(self._build(spec, labels))
            if not labels:
                cost = 1
            elif metrics_dir() is not None:
                cost = multiprocess_samples_per_label_set(spec.kind, self._buckets(spec))
            else:
                cost = samples_per_label_set(self._build(spec, labels), labels)
            self.families[spec.name] = Family(
                spec,
                labels,
                metric,
                options.max_series,
                self.dropped_total.labels(spec.name),
                cost,
            )

    def _buckets(self, spec: MetricSpec) -> tuple[float, ...]:
        return self.options.buckets if spec.buckets == "latency" else DEFAULT_BUCKETS

    def _build(self, spec: MetricSpec, labels: tuple[str, ...]) -> Any:
        if spec.kind == "counter":
            return Counter(spec.name, spec.doc, labels, registry=None)
        if spec.kind == "gauge":
            # One process: prometheus_client's default ("all"), which it ignores.
            mode = spec.workers if metrics_dir() is not None else "all"
            return Gauge(spec.name, spec.doc, labels, registry=None, multiprocess_mode=mode)
        return Histogram(spec.name, spec.doc, labels, buckets=self._buckets(spec), registry=None)

    def _register(self, collector: Any) -> Any:
        self.registry.register(collector)
        self._collectors.append(collector)
        return collector

    def unregister(self) -> None:
        for c in self._collectors:
            self.registry.unregister(c)
        self._collectors.clear()

    def __getitem__(self, name: str) -> Family:
        return self.families[name]


_installed: dict[tuple[int, str], Metrics] = {}


def install(
    options: MetricsOptions, owner: Owner = "ingress", registry: CollectorRegistry = REGISTRY
) -> Metrics:
    """The owner's families in `registry`: the same object for the same options (several
    apps in one process share them), re-registered when the options change."""
    key = (id(registry), owner)
    current = _installed.get(key)
    if current is not None:
        if current.options == options:
            return current
        current.unregister()
    metrics = _installed[key] = Metrics(options, owner, registry)
    return metrics
