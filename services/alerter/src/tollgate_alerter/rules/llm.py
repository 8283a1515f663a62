"""LLM call alerts: exceptions, too slow, hanging requests."""

from __future__ import annotations

import json
from datetime import datetime

from tollgate_alerter.rules.alert import EVENT_CLAIM_TTL_S, MAX_ERROR_CHARS, Alert
from tollgate_alerter.rules.formatting import (
    deployment_subject,
    details_text,
    request_details,
    seconds_between,
)
from tollgate_shared.events import LlmRequestCompleted, LlmRequestFailed
from tollgate_shared.events.llm import LlmRequestBase
from tollgate_shared.vocabulary import AlertType

# Client gave up: not an LLM problem.
CLIENT_CLOSED = 499


def is_llm_failure(event: LlmRequestFailed) -> bool:
    """A failure of the LLM call itself, not a proxy-level refusal or a client that left."""
    if event.status_code == CLIENT_CLOSED:
        return False
    return event.model_id is not None or event.upstream_status_code is not None


def exception_alert(event: LlmRequestFailed) -> Alert | None:
    if not is_llm_failure(event):
        return None
    error = f"{event.error_class}: {event.error_message}"
    if len(error) > MAX_ERROR_CHARS:
        error = error[:MAX_ERROR_CHARS] + "…"
    details = request_details(event)
    status = str(event.status_code)
    if event.upstream_status_code is not None and event.upstream_status_code != event.status_code:
        status += f" (upstream {event.upstream_status_code})"
    elif not event.upstream_reachable:
        status += " (upstream unreachable)"
    details["Status"] = status
    details["Latency"] = f"{seconds_between(event.start_time, event.end_time):.2f}s"
    return Alert(
        alert_type=AlertType.LLM_EXCEPTIONS,
        level="High",
        message=f"LLM API call failed: `{error}`" + details_text(details),
        subject=f"{deployment_subject(event)}/{event.error_class}",
        occurred_at=event.end_time,
        details=details | {"Error": error},
        dedup_key=f"event/{event.event_id}/{AlertType.LLM_EXCEPTIONS}",
        dedup_ttl_s=EVENT_CLAIM_TTL_S,
        request_id=event.request_id,
    )


def slow_alert(event: LlmRequestCompleted, threshold_s: float) -> Alert | None:
    took = seconds_between(event.start_time, event.end_time)
    if took <= threshold_s:
        return None
    details = request_details(event)
    details["Latency"] = f"{took:.2f}s"
    return Alert(
        alert_type=AlertType.LLM_TOO_SLOW,
        level="Low",
        message=(
            f"`Responses are slow - {round(took, 2)}s response time > "
            f"Alerting threshold: {threshold_s}s`" + details_text(details)
        ),
        subject=deployment_subject(event),
        occurred_at=event.end_time,
        details=details,
        dedup_key=f"event/{event.event_id}/{AlertType.LLM_TOO_SLOW}",
        dedup_ttl_s=EVENT_CLAIM_TTL_S,
        request_id=event.request_id,
    )


def hanging_record(event: LlmRequestBase) -> str:
    """What is kept about a started request until it finishes (no content)."""
    record = request_details(event)
    record["_start"] = event.start_time.isoformat()
    record["_subject"] = deployment_subject(event)
    return json.dumps(record)


def hanging_deadline(start: datetime, seen_at: datetime, threshold_s: float) -> float:
    """When a started request counts as hanging (epoch seconds).

    Measured from the later of its start and the moment the alerter learned of it,
    so a consumer catching up on a backlog does not call a request hanging before
    it has read the request's completion.
    """
    return max(start.timestamp(), seen_at.timestamp()) + threshold_s


def hanging_alert(request_id: str, record: str, now: datetime, threshold_s: float) -> Alert:
    data = {str(k): str(v) for k, v in json.loads(record).items()}
    start = datetime.fromisoformat(data.pop("_start"))
    subject = data.pop("_subject", request_id)
    data["Request ID"] = request_id
    data["Running For"] = f"{seconds_between(start, now):.1f}s"
    return Alert(
        alert_type=AlertType.LLM_REQUESTS_HANGING,
        level="Medium",
        message=f"`Requests are hanging - {threshold_s}s+ request time`" + details_text(data),
        subject=subject,
        occurred_at=now,
        details=data,
        request_id=request_id,
    )
