"""The test alerts `/health/services` sends, in LiteLLM's wording."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tollgate_alerter.rules.alert import Alert
from tollgate_shared.vocabulary import AlertType

_TEST_MESSAGES = {
    AlertType.LLM_EXCEPTIONS: "LLM Exception test alert",
    AlertType.LLM_TOO_SLOW: "LLM Too Slow test alert",
    AlertType.LLM_REQUESTS_HANGING: "LLM Requests Hanging test alert",
    AlertType.BUDGET_ALERTS: "Budget Alert test alert",
    AlertType.DB_EXCEPTIONS: "DB Exception test alert",
    AlertType.OUTAGE_ALERTS: "Outage Alert Exception test alert",
    AlertType.DAILY_REPORTS: "Daily Reports test alert",
}


def health_check_alert(alert_type: AlertType, now: datetime, routed: bool = True) -> Alert:
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
