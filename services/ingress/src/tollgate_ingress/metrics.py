"""Records each finished call in LiteLLM's Prometheus metrics (after the response is sent)."""

from __future__ import annotations

from tollgate_shared import litellm_metrics as m
from tollgate_shared.events import LlmRequestCompleted, LlmRequestFailed, LlmRequestFinished


def _s(v: object) -> str:
    return "None" if v is None else str(v)


def record(event: LlmRequestFinished) -> None:
    who = {
        "end_user": _s(event.end_user),
        "hashed_api_key": _s(event.api_key_hash),
        "api_key_alias": _s(event.key_alias),
        "team": _s(event.team_id),
        "team_alias": _s(event.team_alias),
        "user": _s(event.user_id),
    }
    requested = event.requested_model
    model = _s(event.model)
    status = (
        "200"
        if isinstance(event, LlmRequestCompleted)
        else (str(event.status_code) if isinstance(event, LlmRequestFailed) else "500")
    )
    m.PROXY_TOTAL_REQUESTS.labels(**who, requested_model=requested, status_code=status).inc()
    total_s = event.total_latency_ms / 1000
    m.REQUEST_TOTAL_LATENCY.labels(**who, requested_model=requested, model=model).observe(total_s)
    dep = {
        "requested_model": requested,
        "litellm_model_name": model,
        "model_id": _s(event.model_id),
        "api_base": _s(event.api_base),
        "api_provider": _s(event.custom_llm_provider),
        "hashed_api_key": who["hashed_api_key"],
        "api_key_alias": who["api_key_alias"],
        "team": who["team"],
        "team_alias": who["team_alias"],
    }
    if event.model_id is not None:
        m.DEPLOYMENT_TOTAL.labels(**dep).inc()
    if event.upstream_latency_ms is not None:
        m.LLM_API_LATENCY.labels(**who, requested_model=requested, model=model).observe(
            event.upstream_latency_ms / 1000
        )
    if event.overhead_latency_ms is not None:
        m.OVERHEAD_LATENCY.labels(
            hashed_api_key=who["hashed_api_key"],
            api_key_alias=who["api_key_alias"],
            requested_model=requested,
            model_id=dep["model_id"],
            api_base=dep["api_base"],
            api_provider=dep["api_provider"],
            litellm_model_name=model,
        ).observe(event.overhead_latency_ms / 1000)
    if isinstance(event, LlmRequestFailed):
        m.PROXY_FAILED_REQUESTS.labels(
            **who,
            requested_model=requested,
            exception_status=status,
            exception_class=event.error_class,
        ).inc()
        if event.model_id is not None:
            m.DEPLOYMENT_FAILURE.labels(
                **dep, exception_status=status, exception_class=event.error_class
            ).inc()
        return
    if event.model_id is not None:
        m.DEPLOYMENT_SUCCESS.labels(**dep).inc()
    if event.completion_start_time is not None:
        ttft = (event.completion_start_time - event.start_time).total_seconds()
        m.LLM_API_TTFT.labels(**who, requested_model=requested, model=model).observe(ttft)
    m.SPEND.labels(**who, model=model).inc(float(event.spend))
    m.TOTAL_TOKENS.labels(**who, model=model).inc(event.total_tokens)
    m.INPUT_TOKENS.labels(**who, model=model).inc(event.prompt_tokens)
    m.OUTPUT_TOKENS.labels(**who, model=model).inc(event.completion_tokens)
