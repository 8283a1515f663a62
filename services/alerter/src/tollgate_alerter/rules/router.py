"""Router alerts: deployments in cooldown, and the fallbacks the weekly report counts."""

from __future__ import annotations

from tollgate_alerter.rules.alert import EVENT_CLAIM_TTL_S, Alert
from tollgate_alerter.rules.formatting import details_text, safe_api_base
from tollgate_shared.events import DeploymentStateChanged
from tollgate_shared.vocabulary import AlertType


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
        alert_type=AlertType.COOLDOWN_DEPLOYMENT,
        level="Low",
        message=(
            f"Deployment `{event.model_id or event.model_group}` of model group "
            f"`{event.model_group}` is in cooldown" + details_text(details)
        ),
        subject=event.model_id or event.model_group,
        occurred_at=event.occurred_at,
        details=details,
        dedup_key=f"event/{event.event_id}/{AlertType.COOLDOWN_DEPLOYMENT}",
        dedup_ttl_s=EVENT_CLAIM_TTL_S,
        request_id=event.request_id,
    )


def fallback_field(event: DeploymentStateChanged) -> str | None:
    """The report line a fallback counts under: `<model group> -> <fallback group>`."""
    if event.state != "fallback":
        return None
    return f"{event.model_group} -> {event.fallback_model_group or event.model_id or '?'}"
