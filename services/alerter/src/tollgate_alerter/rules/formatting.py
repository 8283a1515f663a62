"""Message text shared by the rules: Slack layout, on-call details, API bases without secrets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

from tollgate_alerter.rules.alert import Alert
from tollgate_shared.events.llm import LlmRequestBase
from tollgate_shared.vocabulary import AlertType

# Alerts whose text is sent as is, without the Level/Timestamp header (as LiteLLM does).
RAW_TEXT_TYPES = frozenset({AlertType.DAILY_REPORTS, AlertType.NEW_MODEL_ADDED})


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


def seconds_between(start: datetime, end: datetime) -> float:
    """Seconds from `start` to `end`, never negative."""
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
