"""`GET /health/services`: LiteLLM's alerting self-test (ingress forwards it from port 4000)."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import Request, Response, Router, get
from litestar.params import QueryParameter

from tollgate_alerter.delivery import Dispatcher, Outcome
from tollgate_alerter.rules import health_check_alert, health_check_webhook_event
from tollgate_shared import names
from tollgate_shared.state import hash_key
from tollgate_shared.vocabulary import AlertType

# The services LiteLLM's endpoint accepts; the alerter answers for the alerting ones.
LITELLM_SERVICES = (
    "slack_budget_alerts",
    "email",
    "langfuse",
    "slack",
    "openmeter",
    "webhook",
    "braintrust",
    "otel",
    "custom_callback_api",
    "langsmith",
    "datadog",
    "generic_api",
)
ALERTER_SERVICES = ("slack", "slack_budget_alerts", "webhook", "email", "pagerduty")


def error(status: int, message: str, kind: str, param: str | None = None) -> Response[Any]:
    """LiteLLM's error body (ProxyException)."""
    return Response(
        {
            "error": {
                "message": message,
                "type": kind,
                "param": param or "None",
                "code": str(status),
            }
        },
        status_code=status,
    )


def _token(request: Request[Any, Any, Any]) -> str | None:
    for raw in (request.headers.get(names.HDR_LITELLM_KEY), request.headers.get("authorization")):
        if raw:
            value = raw.strip()
            if value.lower().startswith("bearer "):
                value = value[7:].strip()
            if value:
                return value
    return None


def _answer(outcomes: Sequence[Outcome], ok_body: dict[str, Any], what: str) -> Response[Any]:
    shown = [
        {
            "destination": o.destination,
            "status": "delivered" if o.ok else "failed",
            "error": o.error,
        }
        for o in outcomes
    ]
    failed = [o.destination for o in outcomes if not o.ok]
    if not failed:
        return Response({**ok_body, "destinations": shown}, status_code=200)
    return Response(
        {
            "status": "failure",
            "message": f"{what} could not be delivered to: {', '.join(failed)}",
            "destinations": shown,
        },
        status_code=502,
    )


def not_configured(service: str) -> Response[Any]:
    return error(
        422,
        f'"{service}" not in proxy config: general_settings. Unable to test this.',
        "auth_error",
        "service",
    )


def health_services_router(
    get_dispatcher: Callable[[], Dispatcher], master_key: str | None
) -> Router:
    @get("/health/services", operation_id="health_services", tags=["health"])
    async def health_services(
        request: Request[Any, Any, Any],
        service: Annotated[
            str | None, QueryParameter(description="the alerting service to test")
        ] = None,
    ) -> Response[Any]:
        """Send a test alert through the named alerting service (admin only, LiteLLM's shape)."""
        if master_key is not None:
            token = _token(request)
            if token is None or not hmac.compare_digest(token.encode(), master_key.encode()):
                return error(
                    401,
                    "Authentication Error, only the master key may call /health/services",
                    "auth_error",
                )
        if not service:
            return error(400, "Service must be specified.", "bad_request_error", "service")
        if service not in LITELLM_SERVICES and service != "pagerduty":
            return error(
                400,
                f"Service must be in list. Service={service}. List={list(ALERTER_SERVICES)}",
                "bad_request_error",
                "service",
            )
        if service not in ALERTER_SERVICES:
            return error(
                400,
                f"Service={service} is a logging sink, not an alerting service: test it through "
                "the exporter (POST /key/health) instead",
                "bad_request_error",
                "service",
            )
        dispatcher = get_dispatcher()
        policy = dispatcher.policy
        dest = dispatcher.destinations
        now = datetime.now(UTC)
        if service in ("slack", "slack_budget_alerts"):
            if not policy.slack_enabled:
                return not_configured(service)
            if not policy.all_slack_urls(dest.slack_default):
                return error(
                    422,
                    "slack is in general_settings.alerting but no webhook URL is configured: set "
                    "SLACK_WEBHOOK_URL or general_settings.alert_to_webhook_url",
                    "auth_error",
                    "service",
                )
            outcomes = await dispatcher.test_slack()
            body = {
                "status": "success",
                "alert_types": sorted(policy.alert_types),
                "message": "Mock Slack Alert sent, verify Slack Alert Received on your channel",
            }
            return _answer(outcomes, body, "The test Slack alert")
        if service not in policy.destinations:
            return not_configured(service)
        if service == "webhook":
            if dest.webhook is None:
                return error(422, "webhook alerting needs WEBHOOK_URL", "auth_error", "service")
            token = _token(request)
            alert = replace(
                health_check_alert(AlertType.BUDGET_ALERTS, now),
                webhook_event=health_check_webhook_event(hash_key(token) if token else None),
            )
            outcomes = await dispatcher.deliver(alert, only=("webhook",), record=False)
            body = {
                "status": "success",
                "message": "Mock Webhook Alert sent, verify Webhook Alert Received",
            }
            return _answer(outcomes, body, "The test webhook event")
        if service == "email":
            if dest.mailer is None or not dest.email_to:
                return error(
                    422,
                    "email alerting needs SMTP_HOST and recipients in TOLLGATE_ALERT_EMAIL_TO",
                    "auth_error",
                    "service",
                )
            outcomes = await dispatcher.deliver(
                health_check_alert(AlertType.BUDGET_ALERTS, now), only=("email",), record=False
            )
            body = {
                "status": "success",
                "message": "Mock Email Alert sent, verify Email Alert Received",
            }
            return _answer(outcomes, body, "The test e-mail")
        if dest.pagerduty is None:
            return error(422, "pagerduty alerting needs PAGERDUTY_API_KEY", "auth_error", "service")
        outcomes = await dispatcher.deliver(
            health_check_alert(AlertType.LLM_EXCEPTIONS, now), only=("pagerduty",), record=False
        )
        body = {"status": "success", "message": "Mock PagerDuty Alert sent, verify the incident"}
        return _answer(outcomes, body, "The test PagerDuty event")

    return Router(path="/", route_handlers=[health_services])
