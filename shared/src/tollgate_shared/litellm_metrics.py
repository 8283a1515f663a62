"""Prometheus metrics under LiteLLM's names and labels, so its Grafana dashboards keep working."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)
_OVERHEAD_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

_WHO = ["end_user", "hashed_api_key", "api_key_alias", "team", "team_alias", "user"]

PROXY_TOTAL_REQUESTS = Counter(
    "litellm_proxy_total_requests_metric",
    "Total requests made to the proxy, by status code",
    [*_WHO, "requested_model", "status_code"],
)
PROXY_FAILED_REQUESTS = Counter(
    "litellm_proxy_failed_requests_metric",
    "Requests that failed, by exception status and class",
    [*_WHO, "requested_model", "exception_status", "exception_class"],
)
REQUEST_TOTAL_LATENCY = Histogram(
    "litellm_request_total_latency_metric",
    "Total latency (seconds) of a request through the proxy",
    [*_WHO, "requested_model", "model"],
    buckets=_LATENCY_BUCKETS,
)
LLM_API_LATENCY = Histogram(
    "litellm_llm_api_latency_metric",
    "Latency (seconds) of the upstream LLM API call",
    [*_WHO, "requested_model", "model"],
    buckets=_LATENCY_BUCKETS,
)
LLM_API_TTFT = Histogram(
    "litellm_llm_api_time_to_first_token_metric",
    "Time to first token (seconds) of a streamed call",
    [*_WHO, "requested_model", "model"],
    buckets=_LATENCY_BUCKETS,
)
OVERHEAD_LATENCY = Histogram(
    "litellm_overhead_latency_metric",
    "Latency (seconds) the proxy added on top of the upstream call",
    [
        "hashed_api_key",
        "api_key_alias",
        "requested_model",
        "model_id",
        "api_base",
        "api_provider",
        "litellm_model_name",
    ],
    buckets=_OVERHEAD_BUCKETS,
)
SPEND = Counter("litellm_spend_metric", "Spend (USD) on LLM requests", [*_WHO, "model"])
TOTAL_TOKENS = Counter("litellm_total_tokens_metric", "Input + output tokens", [*_WHO, "model"])
INPUT_TOKENS = Counter("litellm_input_tokens_metric", "Input (prompt) tokens", [*_WHO, "model"])
OUTPUT_TOKENS = Counter(
    "litellm_output_tokens_metric", "Output (completion) tokens", [*_WHO, "model"]
)
_DEPLOYMENT = [
    "requested_model",
    "litellm_model_name",
    "model_id",
    "api_base",
    "api_provider",
    "hashed_api_key",
    "api_key_alias",
    "team",
    "team_alias",
]
DEPLOYMENT_SUCCESS = Counter(
    "litellm_deployment_success_responses", "Successful responses per deployment", _DEPLOYMENT
)
DEPLOYMENT_FAILURE = Counter(
    "litellm_deployment_failure_responses",
    "Failed responses per deployment",
    [*_DEPLOYMENT, "exception_status", "exception_class"],
)
DEPLOYMENT_TOTAL = Counter(
    "litellm_deployment_total_requests", "Requests per deployment", _DEPLOYMENT
)
DEPLOYMENT_STATE = Gauge(
    "litellm_deployment_state",
    "Deployment state: 0 healthy, 1 partial outage, 2 complete outage",
    ["litellm_model_name", "model_id", "api_base", "api_provider"],
)
REMAINING_TEAM_BUDGET = Gauge(
    "litellm_remaining_team_budget_metric", "Remaining budget of a team", ["team", "team_alias"]
)
REMAINING_KEY_BUDGET = Gauge(
    "litellm_remaining_api_key_budget_metric",
    "Remaining budget of a key",
    ["hashed_api_key", "api_key_alias"],
)
