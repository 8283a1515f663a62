"""Budget alerts: 85% and 95% used, and exceeded, per key, team, user and customer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from tollgate_alerter.rules.alert import Alert
from tollgate_shared.events import SpendTotal
from tollgate_shared.vocabulary import AlertType

BudgetLevel = Literal["85", "95", "exceeded"]

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
        alert_type=AlertType.BUDGET_ALERTS,
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
