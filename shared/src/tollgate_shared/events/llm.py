"""LLM request lifecycle and router events published by ingress."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Literal

from pydantic import Field

from tollgate_shared import names
from tollgate_shared.events.base import Event, Money


class LlmRequestBase(Event):
    """Who made a call, what it asked for and where it was routed."""

    request_id: str
    call_type: Literal["completion", "acompletion", "aresponses", "aembedding", "text_completion"]
    api_key_hash: str | None = None
    key_alias: str | None = None
    user_id: str | None = None
    user_email: str | None = None
    team_id: str | None = None
    team_alias: str | None = None
    end_user: str | None = None
    organization_id: str | None = None

    requested_model: str
    model_group: str | None = None
    model_id: str | None = None
    model: str | None = Field(None, description="the upstream model name the deployment called")
    custom_llm_provider: str | None = None
    api_base: str | None = None
    region: str | None = None

    start_time: datetime
    stream: bool = False
    session_id: str | None = None
    trace_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    requester_ip: str | None = None
    user_agent: str | None = None
    model_parameters: dict[str, Any] = Field(default_factory=dict)

    def subject(self) -> str:
        return names.llm_request_subject(self.event_type, self.team_id)


class LlmRequestStarted(LlmRequestBase):
    """A request is still running `started_event_after_ms` (default 1 s) after it was
    accepted; carries its real start time, for hanging-request detection. Quicker calls send
    only their completed or failed event."""

    event_type: ClassVar[str] = names.LLM_REQUEST_STARTED


class LlmRequestFinished(LlmRequestBase):
    """Fields common to a completed and a failed call."""

    end_time: datetime
    completion_start_time: datetime | None = None
    total_latency_ms: float
    upstream_latency_ms: float | None = None
    overhead_latency_ms: float | None = None

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    spend: Money = Decimal(0)
    cache_hit: bool = False
    usage_estimated: bool = Field(
        False,
        description="the tokens (and so the spend) were estimated from the prompt and the "
        "text streamed so far, because the upstream never reported usage (e.g. the client "
        "went away mid-stream)",
    )
    warnings: list[str] = Field(default_factory=list)

    # Content always travels (sinks need it); storage and export decide downstream.
    messages: Any = None
    response: Any = None
    proxy_server_request: dict[str, Any] | None = None
    # Set when the content was too large for one message and moved to the
    # object store bucket `names.OBJ_BODIES` under this name.
    content_ref: str | None = None


class LlmRequestCompleted(LlmRequestFinished):
    """A successful call: usage, cost, timings, routing, metadata and content."""

    event_type: ClassVar[str] = names.LLM_REQUEST_COMPLETED
    status: Literal["success"] = "success"
    response_id: str | None = None
    response_model: str | None = None
    finish_reasons: list[str] = Field(default_factory=list)


class LlmRequestFailed(LlmRequestFinished):
    """A failed call: error class, status and upstream."""

    event_type: ClassVar[str] = names.LLM_REQUEST_FAILED
    status: Literal["failure"] = "failure"
    error_class: str
    error_message: str
    error_code: str | None = None
    status_code: int
    upstream_status_code: int | None = None
    upstream_reachable: bool = True


class DeploymentStateChanged(Event):
    """A router event: a deployment cooled down, recovered, or a fallback was used."""

    event_type: ClassVar[str] = f"{names.LLM_DEPLOYMENT_PREFIX}.state.v1"
    state: Literal["cooled_down", "recovered", "fallback"]
    model_group: str
    model_id: str | None = None
    api_base: str | None = None
    region: str | None = None
    reason: str | None = None
    cooldown_s: float | None = None
    fallback_model_group: str | None = None
    request_id: str | None = None

    def subject(self) -> str:
        return names.deployment_subject(self.state)
