"""Pure alert rules: which events deserve an alert, at what level, and what it says.

Nothing here does I/O. Stateful rules (outages, hanging requests, budgets,
reports) take the counts their state adapter measured and decide from those.
Messages carry what an on-call engineer needs (model, deployment, API base,
key alias, team, request id, error, counts) and never request or response content.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from tollgate_alerter.policy import AlertingArgs
from tollgate_shared.events import (
    AdminChanged,
    DeploymentStateChanged,
    LedgerDbError,
    LedgerTrackingFailed,
    LlmRequestCompleted,
    LlmRequestFailed,
    SpendTotal,
)
from tollgate_shared.events.llm import LlmRequestBase

Level = Literal["Low", "Medium", "High"]
OutageLevel = Literal["minor", "major"]
BudgetLevel = Literal["85", "95", "exceeded"]

# Alerts whose text is sent as is, without the Level/Timestamp header (as LiteLLM does).
RAW_TEXT_TYPES = frozenset({"daily_reports", "new_model_added"})
# Per-event alerts are claimed by event id for this long, so a redelivered or
# twice-delivered event alerts once across replicas.
EVENT_CLAIM_TTL_S = 3600.0
MAX_ERROR_CHARS = 500
# Client gave up: not an LLM problem.
CLIENT_CLOSED = 499


@dataclass(frozen=True)
class Alert:
    """One alert, ready for delivery."""

    alert_type: str
    level: Level
    message: str
    subject: str
    occurred_at: datetime
    details: Mapping[str, str] = field(default_factory=dict)
    # Redis claim that makes this alert unique across replicas and redeliveries.
    dedup_key: str | None = None
    dedup_ttl_s: float | None = None
    # LiteLLM's webhook event (budget_crossed, threshold_crossed, key_created, ...).
    webhook_event: Mapping[str, Any] | None = None
    email_to: tuple[str, ...] = ()
    request_id: str | None = None
    # False: send at once instead of folding repeats within the anti-storm window.
    squash: bool = True

    @property
    def headline(self) -> str:
        """The first meaningful line, for PagerDuty summaries and e-mail subjects."""
        for line in self.message.splitlines():
            text = line.strip().strip("*`").strip()
            if text:
                return text[:200]
        return self.alert_type

    @property
    def incident_key(self) -> str:
        """Stable per alert type and subject, so repeats update one incident."""
        return f"tollgate/{self.alert_type}/{self.subject}"


# --- formatting ----------------------------------------------------------------------------------
def safe_api_base(api_base: str | None) -> str | None:
    """An API base without credentials or query string (some carry keys there)."""
    if not api_base:
        return None
    parts = urlsplit(api_base)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", "")) or api_base


def details_text(details: Mapping[str, str]) -> str:
    return "".join(f"\n*{name}:* `{value}`" for name, value in details.items() if value)


def slack_text(alert: Alert, now: datetime, count: int = 1, request_ids: Sequence[str] = ()) -> str:
    """The Slack webhook `text`: LiteLLM's layout, with a count when repeats were folded."""
    if alert.alert_type in RAW_TEXT_TYPES:
        text = alert.message
    else:
        stamp = now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        text = f"Level: `{alert.level}`\nTimestamp: `{stamp}`\n\nMessage: {alert.message}"
    if count > 1:
        text = f"[Num Alerts: {count}]\n\n{text}"
        if len(request_ids) > 1:
            shown = ", ".join(request_ids[:5])
            more = f" (+{len(request_ids) - 5} more)" if len(request_ids) > 5 else ""
            text += f"\n\n*Request IDs:* `{shown}`{more}"
    return text


def _seconds(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())


def request_details(event: LlmRequestBase) -> dict[str, str]:
    """Who and what a request was, for on-call: never its content."""
    team = event.team_alias or event.team_id
    if event.team_alias and event.team_id and event.team_alias != event.team_id:
        team = f"{event.team_alias} ({event.team_id})"
    out = {
        "Model": event.model_group or event.requested_model,
        "Deployment": event.model_id or "",
        "Upstream Model": event.model or "",
        "Provider": event.custom_llm_provider or "",
        "API Base": safe_api_base(event.api_base) or "",
        "Region": event.region or "",
        "Key Alias": event.key_alias or "",
        "Team": team or "",
        "User": event.user_id or "",
        "Request ID": event.request_id,
    }
    return {k: v for k, v in out.items() if v}


def deployment_subject(event: LlmRequestBase) -> str:
    return event.model_id or event.model_group or event.requested_model


# --- LLM requests --------------------------------------------------------------------
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
    details["Latency"] = f"{_seconds(event.start_time, event.end_time):.2f}s"
    return Alert(
        alert_type="llm_exceptions",
        level="High",
        message=f"LLM API call failed: `{error}`" + details_text(details),
        subject=f"{deployment_subject(event)}/{event.error_class}",
        occurred_at=event.end_time,
        details=details | {"Error": error},
        dedup_key=f"event/{event.event_id}/llm_exceptions",
        dedup_ttl_s=EVENT_CLAIM_TTL_S,
        request_id=event.request_id,
    )


def slow_alert(event: LlmRequestCompleted, threshold_s: float) -> Alert | None:
    took = _seconds(event.start_time, event.end_time)
    if took <= threshold_s:
        return None
    details = request_details(event)
    details["Latency"] = f"{took:.2f}s"
    return Alert(
        alert_type="llm_too_slow",
        level="Low",
        message=(
            f"`Responses are slow - {round(took, 2)}s response time > "
            f"Alerting threshold: {threshold_s}s`" + details_text(details)
        ),
        subject=deployment_subject(event),
        occurred_at=event.end_time,
        details=details,
        dedup_key=f"event/{event.event_id}/llm_too_slow",
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
    data["Running For"] = f"{_seconds(start, now):.1f}s"
    return Alert(
        alert_type="llm_requests_hanging",
        level="Medium",
        message=f"`Requests are hanging - {threshold_s}s+ request time`" + details_text(data),
        subject=subject,
        occurred_at=now,
        details=data,
        request_id=request_id,
    )


# --- outages -------------------------------------------------------------------------------------
def outage_code(event: LlmRequestFailed) -> int | None:
    """The code an outage counts for this failure: timeouts (408) and 5xx only, else None."""
    if not is_llm_failure(event):
        return None
    code = event.upstream_status_code
    if code is None:
        if event.upstream_reachable and event.error_class != "Timeout":
            return None
        # Unreachable or timed out before any answer: the gateway's 502/504.
        code = 408 if event.error_class == "Timeout" else event.status_code
    if code == 408 or code >= 500:
        return code
    return None


def outage_levels(count: int, args: AlertingArgs) -> list[OutageLevel]:
    """The outage levels reached by `count` errors within the window."""
    levels: list[OutageLevel] = []
    if count >= args.minor_outage_alert_threshold:
        levels.append("minor")
    if count >= args.major_outage_alert_threshold:
        levels.append("major")
    return levels


def error_breakdown(codes: Iterable[int]) -> dict[str, int]:
    out = {"Timeout Errors": 0, "API Errors": 0, "Unknown Errors": 0}
    for code in codes:
        if code == 408:
            out["Timeout Errors"] += 1
        elif code >= 500:
            out["API Errors"] += 1
        else:
            out["Unknown Errors"] += 1
    return {k: v for k, v in out.items() if v}


def outage_alert(
    scope: Literal["Model", "Region"],
    name: str,
    level: OutageLevel,
    codes: Sequence[int],
    window_s: float,
    event: LlmRequestFailed,
    deployments: int = 1,
) -> Alert:
    details = {
        f"{scope} Name": name,
        "Provider": event.custom_llm_provider or "",
    }
    if scope == "Model":
        details["Model"] = event.model_group or event.requested_model
        details["Deployment"] = event.model_id or ""
        details["API Base"] = safe_api_base(event.api_base) or ""
    else:
        details["Deployments Affected"] = str(deployments)
    details = {k: v for k, v in details.items() if v}
    breakdown = error_breakdown(codes)
    errors = "".join(f"\n{kind}: {n}" for kind, n in breakdown.items())
    details["Errors"] = f"{len(codes)} in {window_s:g}s"
    alert_type = "outage_alerts" if scope == "Model" else "region_outage_alerts"
    title = "Major" if level == "major" else "Minor"
    subject = event.model_id or name if scope == "Model" else name
    return Alert(
        alert_type=alert_type,
        level="High" if level == "major" else "Medium",
        message=(
            f"\n*⚠️ {title} Service Outage*\n"
            + details_text(details)
            + f"\n\n*Errors:*{errors}\n\n*Last Request ID:* `{event.request_id}`"
        ),
        subject=f"{subject}/{level}",
        occurred_at=event.end_time,
        details=details | {f"Errors: {k}": str(v) for k, v in breakdown.items()},
        dedup_key=f"outage/{scope.lower()}/{subject}/{level}",
        dedup_ttl_s=window_s,
        request_id=event.request_id,
        squash=False,
    )


def region_of(event: LlmRequestBase) -> str | None:
    """`<provider>/<region>` when the deployment names its region, else None."""
    if not event.region:
        return None
    return f"{event.custom_llm_provider or 'openai'}/{event.region}"


# --- router events -------------------------------------------------------------------------------
def cooldown_alert(event: DeploymentStateChanged) -> Alert | None:
    if event.state != "cooled_down":
        return None
    details = {
        "Model": event.model_group,
        "Deployment": event.model_id or "",
        "API Base": safe_api_base(event.api_base) or "",
        "Region": event.region or "",
        "Cooldown": f"{event.cooldown_s:g}s" if event.cooldown_s is not None else "",
        "Reason": event.reason or "",
        "Request ID": event.request_id or "",
    }
    details = {k: v for k, v in details.items() if v}
    return Alert(
        alert_type="cooldown_deployment",
        level="Low",
        message=(
            f"Deployment `{event.model_id or event.model_group}` of model group "
            f"`{event.model_group}` is in cooldown" + details_text(details)
        ),
        subject=event.model_id or event.model_group,
        occurred_at=event.occurred_at,
        details=details,
        dedup_key=f"event/{event.event_id}/cooldown_deployment",
        dedup_ttl_s=EVENT_CLAIM_TTL_S,
        request_id=event.request_id,
    )


def fallback_field(event: DeploymentStateChanged) -> str | None:
    """The report line a fallback counts under: `<model group> -> <fallback group>`."""
    if event.state != "fallback":
        return None
    return f"{event.model_group} -> {event.fallback_model_group or event.model_id or '?'}"


# --- budgets -------------------------------------------------------------------------------------
_BUDGET_GROUP = {"key": "key", "team": "team", "user": "internal_user", "end_user": "customer"}
_BUDGET_NAME = {"key": "Key", "team": "Team", "user": "User", "end_user": "Customer"}
_THRESHOLD_85 = Decimal("0.15")
_THRESHOLD_95 = Decimal("0.05")


def budget_level(spend: Decimal, max_budget: Decimal | None) -> BudgetLevel | None:
    """The highest budget level reached: exceeded, 95% or 85% used (LiteLLM's rule)."""
    if max_budget is None:
        return None
    if spend >= max_budget:
        return "exceeded"
    left = (max_budget - spend) / max_budget
    if left <= _THRESHOLD_95:
        return "95"
    if left <= _THRESHOLD_85:
        return "85"
    return None


@dataclass(frozen=True)
class EntityInfo:
    """What the alerter knows about a key, team or user beyond its id (from KV state)."""

    key_alias: str | None = None
    team_id: str | None = None
    team_alias: str | None = None
    user_id: str | None = None
    user_email: str | None = None


def budget_alert(total: SpendTotal, info: EntityInfo, ttl_s: float) -> Alert | None:
    if total.entity not in _BUDGET_GROUP:
        return None
    level = budget_level(total.spend, total.max_budget)
    if level is None or total.max_budget is None:
        return None
    name = _BUDGET_NAME[total.entity]
    if level == "exceeded":
        event = "budget_crossed"
        what = f"Budget Crossed\n Total Budget:`{total.max_budget}`"
    else:
        event = "threshold_crossed"
        what = f"{100 - int(level)}% Threshold Crossed ({level}% of budget used)"
    event_message = f"{name} Budget: {what}"
    webhook: dict[str, Any] = {
        "spend": float(total.spend),
        "max_budget": float(total.max_budget),
        "token": total.entity_id if total.entity == "key" else None,
        "customer_id": total.entity_id if total.entity == "end_user" else None,
        "user_id": total.entity_id if total.entity == "user" else info.user_id,
        "team_id": total.entity_id if total.entity == "team" else info.team_id,
        "team_alias": info.team_alias,
        "user_email": info.user_email,
        "key_alias": info.key_alias,
        "projected_exceeded_date": None,
        "projected_spend": None,
        "event": event,
        "event_group": _BUDGET_GROUP[total.entity],
        "event_message": event_message,
    }
    shown = {k: v for k, v in webhook.items() if v is not None and k not in ("token", "event")}
    shown.pop("event_message")
    if total.budget_reset_at is not None:
        shown["budget_reset_at"] = total.budget_reset_at.isoformat()
    period = total.period_start.isoformat() if total.period_start else "lifetime"
    if total.entity == "key":
        shown["key"] = f"…{total.entity_id[-8:]}"
    lines = "".join(f"\n*{k}:* `{v}`" for k, v in shown.items())
    return Alert(
        alert_type="budget_alerts",
        level="High",
        message=event_message + "\n" + lines,
        subject=f"{total.entity}/{total.entity_id}",
        occurred_at=datetime.now(UTC),
        details={k: str(v) for k, v in shown.items()},
        # Once per level per budget period: a new period may cross the same level again.
        dedup_key=f"budget/{total.entity}/{total.entity_id}/{period}/{level}",
        dedup_ttl_s=ttl_s,
        webhook_event=webhook,
        email_to=(info.user_email,) if info.user_email else (),
        squash=False,
    )


# --- ledger failures -----------------------------------------------------------------------------
def db_error_alert(event: LedgerDbError) -> Alert:
    error = event.error[:MAX_ERROR_CHARS]
    return Alert(
        alert_type="db_exceptions",
        level="High",
        message=(
            f"DB read/write call failed: `{error}`\n*Producer:* `{event.producer}`"
            f"\n*Batch Size:* `{event.batch_size}`"
        ),
        subject=f"{event.producer}/db",
        occurred_at=event.occurred_at,
        details={"Error": error, "Producer": event.producer, "Batch Size": str(event.batch_size)},
        dedup_key=f"event/{event.event_id}/db_exceptions",
        dedup_ttl_s=EVENT_CLAIM_TTL_S,
    )


def tracking_failed_alert(event: LedgerTrackingFailed) -> Alert:
    error = event.error[:MAX_ERROR_CHARS]
    details = {"Subject": event.subject_name, "Error": error}
    if event.request_id:
        details["Request ID"] = event.request_id
    return Alert(
        alert_type="failed_tracking_spend",
        level="High",
        message="Failed Tracking Cost for " + f"`{event.subject_name}`" + details_text(details),
        subject=event.subject_name.rsplit(".", 1)[0],
        occurred_at=event.occurred_at,
        details=details,
        dedup_key=f"event/{event.event_id}/failed_tracking_spend",
        dedup_ttl_s=EVENT_CLAIM_TTL_S,
        request_id=event.request_id,
    )


# --- management ----------------------------------------------------------------------------------
_SECRET_PARTS = ("secret", "password", "token", "api_key", "apikey", "credential", "private")
_MANAGEMENT_TYPE = {
    ("key", "created"): "new_virtual_key_created",
    ("key", "deleted"): "virtual_key_deleted",
    ("team", "created"): "new_team_created",
    ("team", "deleted"): "team_deleted",
    ("user", "created"): "new_internal_user_created",
    ("user", "deleted"): "internal_user_deleted",
}
_UPDATED_TYPE = {
    "key": "virtual_key_updated",
    "team": "team_updated",
    "user": "internal_user_updated",
}
_TITLE = {
    "new_virtual_key_created": "Virtual Key Created",
    "virtual_key_updated": "Virtual Key Updated",
    "virtual_key_deleted": "Virtual Key Deleted",
    "new_team_created": "New Team Created",
    "team_updated": "Team Updated",
    "team_deleted": "Team Deleted",
    "new_internal_user_created": "New Internal User Created",
    "internal_user_updated": "Internal User Updated",
    "internal_user_deleted": "Internal User Deleted",
}


def management_type(event: AdminChanged) -> str | None:
    """The LiteLLM alert type of an admin change, or None when it has none."""
    if event.entity == "model":
        return "new_model_added" if event.action == "created" else None
    found = _MANAGEMENT_TYPE.get((event.entity, event.action))
    if found:
        return found
    return _UPDATED_TYPE.get(event.entity)


def _is_secret(name: str) -> bool:
    lowered = name.lower()
    return lowered in ("key", "token") or any(part in lowered for part in _SECRET_PARTS)


def _shown_value(name: str, value: Any) -> str:
    if _is_secret(name):
        return "<redacted>"
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 200 else text[:200] + "…"


def management_alert(event: AdminChanged) -> Alert | None:
    alert_type = management_type(event)
    if alert_type is None:
        return None
    values = dict(event.updated_values or {})
    if alert_type == "new_model_added":
        return new_model_alert(event, values)
    lines = f"`{_TITLE[alert_type]}`\n*Action Done by:*\nchanged_by: `{event.changed_by or '-'}`\n"
    lines += f"\n*Object:*\n{event.entity}: `{_shown_value('id', event.object_id)}`\n"
    if event.action not in ("created", "deleted", "updated"):
        lines += f"action: `{event.action}`\n"
    if values:
        lines += "\n*Arguments passed:*\n"
        lines += "".join(f"{k}: `{_shown_value(k, v)}`\n" for k, v in values.items())
    webhook: dict[str, Any] | None = None
    email_to: tuple[str, ...] = ()
    if alert_type in ("new_virtual_key_created", "new_internal_user_created"):
        is_key = alert_type == "new_virtual_key_created"
        webhook = {
            "spend": float(values.get("spend") or 0),
            "max_budget": values.get("max_budget"),
            "token": event.object_id if is_key else None,
            "customer_id": None,
            "user_id": values.get("user_id") or (None if is_key else event.object_id),
            "team_id": values.get("team_id"),
            "team_alias": values.get("team_alias"),
            "user_email": values.get("user_email"),
            "key_alias": values.get("key_alias"),
            "projected_exceeded_date": None,
            "projected_spend": None,
            "event": "key_created" if is_key else "internal_user_created",
            "event_group": "key" if is_key else "internal_user",
            "event_message": _TITLE[alert_type],
        }
        if isinstance(values.get("user_email"), str):
            email_to = (values["user_email"],)
    return Alert(
        alert_type=alert_type,
        level="Low",
        message=lines,
        subject=f"{event.entity}/{event.object_id}",
        occurred_at=event.occurred_at,
        details={"Changed By": event.changed_by or "-", event.entity: event.object_id},
        dedup_key=f"event/{event.event_id}/{alert_type}",
        dedup_ttl_s=EVENT_CLAIM_TTL_S,
        webhook_event=webhook,
        email_to=email_to,
    )


def new_model_alert(event: AdminChanged, values: Mapping[str, Any]) -> Alert:
    name = str(values.get("model_name") or event.object_id)
    params = values.get("litellm_params") if isinstance(values.get("litellm_params"), dict) else {}
    assert isinstance(params, dict)
    info = {
        "Model Name": name,
        "Model ID": event.object_id,
        "LiteLLM Model": str(params.get("model") or ""),
        "API Base": safe_api_base(params.get("api_base")) or "",
        "Added By": event.changed_by or "",
    }
    info = {k: v for k, v in info.items() if v}
    return Alert(
        alert_type="new_model_added",
        level="Low",
        message="*🚅 New Model Added*" + details_text(info),
        subject=event.object_id,
        occurred_at=event.occurred_at,
        details=info,
        dedup_key=f"event/{event.event_id}/new_model_added",
        dedup_ttl_s=EVENT_CLAIM_TTL_S,
    )


# --- reports -------------------------------------------------------------------------------------
SPEND_SECTIONS = (("team", "Team"), ("key", "Key"), ("model", "Model"), ("tag", "Tag"))
REPORT_ROWS = 10


def _period(start: datetime, end: datetime) -> str:
    fmt = "%Y-%m-%d %H:%M UTC"
    return f"{start.astimezone(UTC).strftime(fmt)} - {end.astimezone(UTC).strftime(fmt)}"


def spend_report(sums: Mapping[str, Decimal], start: datetime, end: datetime) -> Alert | None:
    """Spend by team, key, model and tag over the period; None when nothing was spent."""
    if not any(v > 0 for v in sums.values()):
        return None
    days = (end - start).total_seconds() / 86400
    message = f"*💸 Spend Report for `{_period(start, end)}` ({days:.2g} days)*\n"
    for prefix, title in SPEND_SECTIONS:
        rows = sorted(
            ((k.split(":", 1)[1], v) for k, v in sums.items() if k.startswith(prefix + ":")),
            key=lambda kv: kv[1],
            reverse=True,
        )
        if not rows:
            continue
        message += f"\n*{title} Spend Report:*\n"
        for label, amount in rows[:REPORT_ROWS]:
            message += f"{title}: `{label}` | Spend: `${amount.quantize(Decimal('0.0001'))}`\n"
        if len(rows) > REPORT_ROWS:
            message += f"… and {len(rows) - REPORT_ROWS} more\n"
    return Alert(
        alert_type="spend_reports",
        level="Low",
        message=message,
        subject="spend_report",
        occurred_at=end,
        squash=False,
    )


@dataclass(frozen=True)
class DeploymentStats:
    label: str
    api_base: str
    failed: int = 0
    latency_s: float = 0.0
    output_tokens: int = 0
    successes: int = 0

    @property
    def latency_per_token(self) -> float:
        """Seconds per output token (seconds per call when calls produced no tokens)."""
        if self.output_tokens > 0:
            return self.latency_s / self.output_tokens
        return self.latency_s / self.successes if self.successes else 0.0


def daily_report(
    stats: Sequence[DeploymentStats], start: datetime, end: datetime, next_run: datetime
) -> Alert | None:
    """LiteLLM's daily report: top 5 deployments by failed requests and by latency per token."""
    failed = sorted((s for s in stats if s.failed > 0), key=lambda s: s.failed, reverse=True)[:5]
    slow = sorted(
        (s for s in stats if s.latency_per_token > 0),
        key=lambda s: s.latency_per_token,
        reverse=True,
    )[:5]
    if not failed and not slow:
        return None
    message = f"\n\nPeriod: `{_period(start, end)}`\nHere are today's key metrics 📈: \n\n"
    message += "\n\n*❗️ Top Deployments with Most Failed Requests:*\n\n"
    if not failed:
        message += "\tNone\n"
    for i, s in enumerate(failed, 1):
        message += (
            f"\t{i}. Deployment: `{s.label}`, Failed Requests: `{s.failed}`, "
            f" API Base: `{s.api_base}`\n"
        )
    message += "\n\n*😅 Top Slowest Deployments:*\n\n"
    if not slow:
        message += "\tNone\n"
    for i, s in enumerate(slow, 1):
        message += (
            f"\t{i}. Deployment: `{s.label}`, Latency per output token: "
            f"`{round(s.latency_per_token, 3)}s/token`,  API Base: `{s.api_base}`\n\n"
        )
    message += f"\n\nNext Run is at: `{next_run.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S UTC')}`"
    return Alert(
        alert_type="daily_reports",
        level="Low",
        message=message,
        subject="daily_report",
        occurred_at=end,
        squash=False,
    )


def fallback_report(counts: Mapping[str, int], start: datetime, end: datetime) -> Alert | None:
    rows = sorted(((k, v) for k, v in counts.items() if v > 0), key=lambda kv: kv[1], reverse=True)
    if not rows:
        return None
    message = f"*🔁 Fallback Report for `{_period(start, end)}`*\n\n"
    message += "".join(f"`{route}`: {n} fallbacks\n" for route, n in rows[: REPORT_ROWS * 2])
    return Alert(
        alert_type="fallback_reports",
        level="Low",
        message=message,
        subject="fallback_report",
        occurred_at=end,
        squash=False,
    )


# --- health-check alerts -------------------------------------------------------------------------
_TEST_MESSAGES = {
    "llm_exceptions": "LLM Exception test alert",
    "llm_too_slow": "LLM Too Slow test alert",
    "llm_requests_hanging": "LLM Requests Hanging test alert",
    "budget_alerts": "Budget Alert test alert",
    "db_exceptions": "DB Exception test alert",
    "outage_alerts": "Outage Alert Exception test alert",
    "daily_reports": "Daily Reports test alert",
}


def health_check_alert(alert_type: str, now: datetime, routed: bool = True) -> Alert:
    """The `/health/services` test message (LiteLLM's wording): per routed type, or generic."""
    generic = "This is a test slack alert message"
    return Alert(
        alert_type=alert_type,
        level="Low",
        message=_TEST_MESSAGES.get(alert_type, generic) if routed else generic,
        subject="test",
        occurred_at=now,
        squash=False,
    )


def health_check_webhook_event(token: str | None) -> dict[str, Any]:
    """LiteLLM's test webhook event for `/health/services?service=webhook`."""
    return {
        "spend": 1.0,
        "max_budget": 0.0,
        "token": token,
        "customer_id": None,
        "user_id": "default_user_id",
        "team_id": None,
        "team_alias": None,
        "user_email": None,
        "key_alias": None,
        "projected_exceeded_date": None,
        "projected_spend": None,
        "event": "budget_crossed",
        "event_group": "key",
        "event_message": "Key Budget: Budget Crossed",
    }
