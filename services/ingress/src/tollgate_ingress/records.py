"""The call record: what ingress knows about one call while it runs, and the
`llm.request.started|completed|failed` events it becomes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from tollgate_ingress.auth import Identity
from tollgate_ingress.parsing import ChatRequest
from tollgate_ingress.routing import Deployment
from tollgate_ingress.usage import Usage
from tollgate_shared.events import LlmRequestCompleted, LlmRequestFailed, LlmRequestStarted
from tollgate_shared.vocabulary import Producer

PRODUCER: Producer = "ingress"


def without_vectors(response: dict[str, Any]) -> dict[str, Any]:
    """An embeddings response for logging: the vectors' sizes, not the vectors."""
    data = [
        {"index": d.get("index"), "embedding_length": len(d.get("embedding") or ())}
        for d in response.get("data") or ()
        if isinstance(d, dict)
    ]
    return {**response, "data": data}


@dataclass
class Call:
    """What ingress knows about one call while it runs; becomes its events."""

    request_id: str
    identity: Identity
    request: ChatRequest
    start_time: datetime
    deployment: Deployment | None = None
    requester_ip: str | None = None
    user_agent: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None

    def _common(self) -> dict[str, Any]:
        ident, req, dep = self.identity, self.request, self.deployment
        return {
            "producer": PRODUCER,
            "traceparent": self.traceparent,
            "tracestate": self.tracestate,
            "request_id": self.request_id,
            "call_type": self.request.call_type,
            "api_key_hash": ident.api_key_hash,
            "key_alias": ident.key_alias,
            "user_id": ident.user_id,
            "user_email": ident.user_email,
            "team_id": ident.team_id,
            "team_alias": ident.team_alias,
            "end_user": req.end_user,
            "requested_model": req.model,
            "model_group": req.model if dep else None,
            "model_id": dep.model_id if dep else None,
            "model": dep.params.upstream_model if dep else None,
            "custom_llm_provider": dep.params.provider if dep else None,
            "api_base": (dep.params.api_base if dep else None),
            "region": dep.region if dep else None,
            "start_time": self.start_time,
            "stream": req.stream,
            "session_id": req.session_id,
            "trace_id": req.trace_id,
            "metadata": req.metadata,
            "tags": req.tags,
            "requester_ip": self.requester_ip,
            "user_agent": self.user_agent,
            "model_parameters": req.model_parameters,
        }

    def started(self) -> LlmRequestStarted:
        return LlmRequestStarted(**self._common())

    def _finished(
        self, elapsed_s: float, upstream_s: float | None, first_token_s: float | None
    ) -> dict[str, Any]:
        end = self.start_time + timedelta(seconds=elapsed_s)
        total_ms = elapsed_s * 1000
        upstream_ms = upstream_s * 1000 if upstream_s is not None else None
        return {
            **self._common(),
            "end_time": end,
            "completion_start_time": (
                self.start_time + timedelta(seconds=first_token_s)
                if first_token_s is not None
                else None
            ),
            "total_latency_ms": round(total_ms, 3),
            "upstream_latency_ms": round(upstream_ms, 3) if upstream_ms is not None else None,
            "overhead_latency_ms": (
                round(max(total_ms - upstream_ms, 0.0), 3) if upstream_ms is not None else None
            ),
            "messages": self.request.messages,
            "proxy_server_request": {
                "body": {**self.request.upstream_body, "metadata": self.request.metadata}
            },
        }

    def completed(
        self,
        *,
        elapsed_s: float,
        upstream_s: float | None,
        first_token_s: float | None,
        usage: Usage,
        spend: Decimal,
        response: dict[str, Any],
        warnings: list[str],
        usage_estimated: bool = False,
    ) -> LlmRequestCompleted:
        finish = [
            c.get("finish_reason")
            for c in response.get("choices") or ()
            if isinstance(c, dict) and c.get("finish_reason")
        ]
        return LlmRequestCompleted(
            **self._finished(elapsed_s, upstream_s, first_token_s),
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
            cached_tokens=usage.cached_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            spend=spend,
            usage_estimated=usage_estimated,
            warnings=warnings,
            response=response,
            response_id=response.get("id"),
            response_model=response.get("model"),
            finish_reasons=finish,
        )

    def failed(
        self,
        *,
        elapsed_s: float,
        upstream_s: float | None,
        error_class: str,
        error_message: str,
        status_code: int,
        upstream_status_code: int | None,
        upstream_reachable: bool,
        error_code: str | None = None,
        response: Any = None,
        usage: Usage | None = None,
        spend: Decimal = Decimal(0),
        usage_estimated: bool = False,
        warnings: list[str] | None = None,
    ) -> LlmRequestFailed:
        """A failed call; costed when the upstream may bill it anyway (abandoned, cancelled)."""
        u = usage or Usage()
        return LlmRequestFailed(
            **self._finished(elapsed_s, upstream_s, None),
            prompt_tokens=u.prompt_tokens,
            completion_tokens=u.completion_tokens,
            total_tokens=u.total_tokens,
            cached_tokens=u.cached_tokens,
            reasoning_tokens=u.reasoning_tokens,
            spend=spend,
            usage_estimated=usage_estimated,
            warnings=warnings or [],
            error_class=error_class,
            error_message=error_message[:4000],
            error_code=error_code,
            status_code=status_code,
            upstream_status_code=upstream_status_code,
            upstream_reachable=upstream_reachable,
            response=response,
        )


def refusal(
    *,
    request_id: str,
    start_time: datetime,
    elapsed_s: float,
    call_type: str,
    identity: Identity | None,
    request: ChatRequest | None,
    requested_model: str,
    error_class: str,
    error_message: str,
    error_code: str | None,
    status_code: int,
    requester_ip: str | None,
    user_agent: str | None,
    traceparent: str | None,
) -> LlmRequestFailed:
    """A call the gateway refused before any upstream was chosen (bad key, budget, rate
    limit, invalid request): a failed call, as LiteLLM records it."""
    ident, req = identity, request
    return LlmRequestFailed(
        producer=PRODUCER,
        traceparent=traceparent,
        request_id=request_id,
        call_type=req.call_type if req is not None else call_type,
        api_key_hash=ident.api_key_hash if ident else None,
        key_alias=ident.key_alias if ident else None,
        user_id=ident.user_id if ident else None,
        user_email=ident.user_email if ident else None,
        team_id=ident.team_id if ident else None,
        team_alias=ident.team_alias if ident else None,
        end_user=req.end_user if req else None,
        requested_model=req.model if req else requested_model,
        start_time=start_time,
        stream=req.stream if req else False,
        session_id=req.session_id if req else None,
        trace_id=req.trace_id if req else None,
        metadata=req.metadata if req else {},
        tags=req.tags if req else [],
        requester_ip=requester_ip,
        user_agent=user_agent,
        end_time=start_time + timedelta(seconds=elapsed_s),
        total_latency_ms=round(elapsed_s * 1000, 3),
        messages=req.messages if req else None,
        error_class=error_class,
        error_message=error_message[:4000],
        error_code=error_code,
        status_code=status_code,
    )


def now_utc() -> datetime:
    return datetime.now(UTC)
