"""Management alerts: key, team and user changes, and new models, with secrets masked."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tollgate_alerter.rules.alert import EVENT_CLAIM_TTL_S, Alert
from tollgate_alerter.rules.formatting import details_text, safe_api_base
from tollgate_shared.events import AdminChanged
from tollgate_shared.redaction import MASKED, is_secret_name, mask_secrets, mask_value
from tollgate_shared.vocabulary import AlertType

_MANAGEMENT_TYPE = {
    ("key", "created"): AlertType.NEW_VIRTUAL_KEY_CREATED,
    ("key", "deleted"): AlertType.VIRTUAL_KEY_DELETED,
    ("team", "created"): AlertType.NEW_TEAM_CREATED,
    ("team", "deleted"): AlertType.TEAM_DELETED,
    ("user", "created"): AlertType.NEW_INTERNAL_USER_CREATED,
    ("user", "deleted"): AlertType.INTERNAL_USER_DELETED,
}
_UPDATED_TYPE = {
    "key": AlertType.VIRTUAL_KEY_UPDATED,
    "team": AlertType.TEAM_UPDATED,
    "user": AlertType.INTERNAL_USER_UPDATED,
}
_TITLE = {
    AlertType.NEW_VIRTUAL_KEY_CREATED: "Virtual Key Created",
    AlertType.VIRTUAL_KEY_UPDATED: "Virtual Key Updated",
    AlertType.VIRTUAL_KEY_DELETED: "Virtual Key Deleted",
    AlertType.NEW_TEAM_CREATED: "New Team Created",
    AlertType.TEAM_UPDATED: "Team Updated",
    AlertType.TEAM_DELETED: "Team Deleted",
    AlertType.NEW_INTERNAL_USER_CREATED: "New Internal User Created",
    AlertType.INTERNAL_USER_UPDATED: "Internal User Updated",
    AlertType.INTERNAL_USER_DELETED: "Internal User Deleted",
}


def management_type(event: AdminChanged) -> AlertType | None:
    """The LiteLLM alert type of an admin change, or None when it has none."""
    if event.entity == "model":
        return AlertType.NEW_MODEL_ADDED if event.action == "created" else None
    found = _MANAGEMENT_TYPE.get((event.entity, event.action))
    if found:
        return found
    return _UPDATED_TYPE.get(event.entity)


def _shown_value(name: str, value: Any) -> str:
    """A value as the alert shows it: credentials masked by the shared rule, long ones cut."""
    if is_secret_name(name):
        # An object under a credential's name is a credential as a whole: show none of it.
        shown = MASKED if isinstance(value, Mapping | list) else mask_value(value)
    else:
        shown = mask_secrets(value)
    text = shown if isinstance(shown, str) else json.dumps(shown, default=str)
    return text if len(text) <= 200 else text[:200] + "…"


def management_alert(event: AdminChanged) -> Alert | None:
    alert_type = management_type(event)
    if alert_type is None:
        return None
    values = dict(event.updated_values or {})
    if alert_type == AlertType.NEW_MODEL_ADDED:
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
    if alert_type in (AlertType.NEW_VIRTUAL_KEY_CREATED, AlertType.NEW_INTERNAL_USER_CREATED):
        is_key = alert_type == AlertType.NEW_VIRTUAL_KEY_CREATED
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
        alert_type=AlertType.NEW_MODEL_ADDED,
        level="Low",
        message="*🚅 New Model Added*" + details_text(info),
        subject=event.object_id,
        occurred_at=event.occurred_at,
        details=info,
        dedup_key=f"event/{event.event_id}/{AlertType.NEW_MODEL_ADDED}",
        dedup_ttl_s=EVENT_CLAIM_TTL_S,
    )
