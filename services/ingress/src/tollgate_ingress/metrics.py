"""Records each finished call, refusals included, and each router change in LiteLLM's
Prometheus metrics (after the response is sent)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from tollgate_ingress.records import Call
from tollgate_ingress.routing import Deployment
from tollgate_ingress.upstream.openai import LIMITS
from tollgate_shared import litellm_metrics as lm
from tollgate_shared.events import LlmRequestCompleted, LlmRequestFailed, LlmRequestFinished

# LiteLLM's `route` label, from the call type.
_ROUTES = {
    "acompletion": "/chat/completions",
    "completion": "/chat/completions",
    "aembedding": "/embeddings",
    "aresponses": "/responses",
    "text_completion": "/completions",
}
HEALTHY, PARTIAL_OUTAGE, COMPLETE_OUTAGE = 0, 1, 2


def _s(v: object) -> str:
    return "None" if v is None else str(v)


def _dep_labels(d: Deployment) -> dict[str, str]:
    return {
        "litellm_model_name": d.params.upstream_model,
        "model_id": d.model_id,
        "api_base": _s(d.params.api_base),
        "api_provider": d.params.provider,
    }


class Recorder:
    """The ingress's metric families, and how one call or router change lands in them."""

    def __init__(
        self,
        options: lm.MetricsOptions,
        upstream_limits: Callable[[str], tuple[int | None, int | None]] = LIMITS.latest,
    ) -> None:
        self.options = options
        # A deployment's latest x-ratelimit-remaining-requests/tokens (None: not sent).
        self._upstream_limits = upstream_limits
        self.m = m = lm.install(options, "ingress")
        f = m.families
        self._total = f["litellm_proxy_total_requests_metric"]
        self._failed = f["litellm_proxy_failed_requests_metric"]
        self._latency = f["litellm_request_total_latency_metric"]
        self._api_latency = f["litellm_llm_api_latency_metric"]
        self._ttft = f["litellm_llm_api_time_to_first_token_metric"]
        self._overhead = f["litellm_overhead_latency_metric"]
        self._requests = f["litellm_requests_metric"]
        self._spend = f["litellm_spend_metric"]
        self._tokens = f["litellm_total_tokens_metric"]
        self._input = f["litellm_input_tokens_metric"]
        self._output = f["litellm_output_tokens_metric"]
        self._api_failed = f["litellm_llm_api_failed_requests_metric"]
        self._dep_ok = f["litellm_deployment_success_responses"]
        self._dep_fail = f["litellm_deployment_failure_responses"]
        self._dep_total = f["litellm_deployment_total_requests"]
        self._per_token = f["litellm_deployment_latency_per_output_token"]
        self._state = f["litellm_deployment_state"]
        self._cooled = f["litellm_deployment_cooled_down"]
        self._tpm = f["litellm_deployment_tpm_limit"]
        self._rpm = f["litellm_deployment_rpm_limit"]
        self._fb_ok = f["litellm_deployment_successful_fallbacks"]
        self._fb_fail = f["litellm_deployment_failed_fallbacks"]
        self._remaining_requests = f["litellm_remaining_requests"]
        self._remaining_tokens = f["litellm_remaining_tokens"]
        self._custom = bool(options.metadata_labels or options.tags)

    # -- calls --------------------------------------------------------------------
    def labels(self, event: LlmRequestFinished) -> dict[str, str]:
        """Every label any family may take, for one call."""
        if isinstance(event, LlmRequestFailed):
            status = exc_status = str(event.status_code)
            exc_class = event.error_class
        else:
            status, exc_status, exc_class = "200", "None", "None"
        v = {
            "end_user": _s(event.end_user) if self.options.end_user else "None",
            "hashed_api_key": _s(event.api_key_hash),
            "api_key_alias": _s(event.key_alias),
            "team": _s(event.team_id),
            "team_alias": _s(event.team_alias),
            "user": _s(event.user_id),
            "user_email": _s(event.user_email),
            "requested_model": event.requested_model,
            "model": _s(event.model),
            "litellm_model_name": _s(event.model),
            "model_group": _s(event.model_group),
            "model_id": _s(event.model_id),
            "api_base": _s(event.api_base),
            "api_provider": _s(event.custom_llm_provider),
            "status_code": status,
            "exception_status": exc_status,
            "exception_class": exc_class,
            "route": _ROUTES.get(event.call_type, event.call_type),
            "client_ip": _s(event.requester_ip),
            "user_agent": _s(event.user_agent),
        }
        if self._custom:
            v.update(self.options.custom_values(event.metadata, event.tags))
        return v

    def record(self, event: LlmRequestFinished) -> None:
        v = self.labels(event)
        self._total.of(v).inc()
        self._latency.of(v).observe(event.total_latency_ms / 1000)
        deployed = event.model_id is not None
        if deployed:
            self._dep_total.of(v).inc()
            requests, tokens = self._upstream_limits(v["model_id"])
            if requests is not None:
                self._remaining_requests.of(v).set(requests)
            if tokens is not None:
                self._remaining_tokens.of(v).set(tokens)
        if event.upstream_latency_ms is not None:
            self._api_latency.of(v).observe(event.upstream_latency_ms / 1000)
        if event.overhead_latency_ms is not None:
            self._overhead.of(v).observe(event.overhead_latency_ms / 1000)
        if not isinstance(event, LlmRequestCompleted):
            self._failed.of(v).inc()
            if deployed:
                self._dep_fail.of(v).inc()
                self._api_failed.of(v).inc()
            return
        if deployed:
            self._dep_ok.of(v).inc()
        if event.completion_start_time is not None:
            ttft = (event.completion_start_time - event.start_time).total_seconds()
            self._ttft.of(v).observe(ttft)
        if event.completion_tokens and event.upstream_latency_ms is not None:
            self._per_token.of(v).observe(
                event.upstream_latency_ms / 1000 / event.completion_tokens
            )
        self._requests.of(v).inc()
        self._spend.of(v).inc(float(event.spend))
        self._tokens.of(v).inc(event.total_tokens)
        self._input.of(v).inc(event.prompt_tokens)
        self._output.of(v).inc(event.completion_tokens)

    def fallback(
        self,
        call: Call,
        fallback_model: str,
        exception_status: int | None,
        exception_class: str,
        ok: bool,
    ) -> None:
        """A fallback group answered (ok) or failed too, after the primary failed."""
        ident, req = call.identity, call.request
        v = {
            "requested_model": req.model,
            "fallback_model": fallback_model,
            "hashed_api_key": ident.api_key_hash,
            "api_key_alias": _s(ident.key_alias),
            "team": _s(ident.team_id),
            "team_alias": _s(ident.team_alias),
            "exception_status": _s(exception_status),
            "exception_class": exception_class,
            "model_id": _s(call.deployment.model_id if call.deployment else None),
        }
        if self._custom:
            v.update(self.options.custom_values(req.metadata, req.tags))
        (self._fb_ok if ok else self._fb_fail).of(v).inc()

    # -- deployments ------------------------------------------------------------------
    def deployments(self, deployments: Iterable[Deployment]) -> None:
        """Each known deployment's limits, and healthy until a call says otherwise."""
        for d in deployments:
            v = _dep_labels(d)
            if not self._state.known(v):
                self._state.of(v).set(HEALTHY)
            if d.params.tpm is not None:
                self._tpm.of(v).set(d.params.tpm)
            if d.params.rpm is not None:
                self._rpm.of(v).set(d.params.rpm)

    def deployment_state(self, d: Deployment, state: int) -> None:
        self._state.of(_dep_labels(d)).set(state)

    def cooled_down(self, d: Deployment, status: int) -> None:
        self._cooled.of({**_dep_labels(d), "exception_status": str(status)}).inc()
        self.deployment_state(d, COMPLETE_OUTAGE)
