"""`GET /health/services`: LiteLLM's alerting self-test (ingress forwards it from port 4000)."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from litestar import Request, Response, Router, get
from litestar.params import QueryParameter

from tollgate_alerter.service import SLACK_SERVICES, NotConfiguredError, Outcome, SelfTest
from tollgate_shared.credentials import presented_key
from tollgate_shared.errors import error_body

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


def error(status: int, message: str, param: str | None = None) -> Response[Any]:
    """The OpenAI-format error body every service answers with (`tollgate_shared.errors`)."""
    return Response(error_body(message, status, param=param), status_code=status)


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


# The success body per tested service (LiteLLM's wording), and what failed when one refused.
_TESTED = {
    "webhook": ("Mock Webhook Alert sent, verify Webhook Alert Received", "The test webhook event"),
    "email": ("Mock Email Alert sent, verify Email Alert Received", "The test e-mail"),
    "pagerduty": ("Mock PagerDuty Alert sent, verify the incident", "The test PagerDuty event"),
}


def health_services_router(get_self_test: Callable[[], SelfTest], master_key: str | None) -> Router:
    @get("/health/services", operation_id="health_services", tags=["health"])
    async def health_services(
        request: Request[Any, Any, Any],
        service: Annotated[
            str | None, QueryParameter(description="the alerting service to test")
        ] = None,
    ) -> Response[Any]:
        """Send a test alert through the named alerting service (admin only, LiteLLM's shape)."""
        token = presented_key(request.headers.get)
        if master_key is not None and (
            token is None or not hmac.compare_digest(token.encode(), master_key.encode())
        ):
            return error(401, "Authentication Error, only the master key may call /health/services")
        if not service:
            return error(400, "Service must be specified.", "service")
        if service not in LITELLM_SERVICES and service != "pagerduty":
            return error(
                400,
                f"Service must be in list. Service={service}. List={list(ALERTER_SERVICES)}",
                "service",
            )
        if service not in ALERTER_SERVICES:
            return error(
                400,
                f"Service={service} is a logging sink, not an alerting service: test it through "
                "the exporter (POST /key/health) instead",
                "service",
            )
        self_test = get_self_test()
        try:
            outcomes = await self_test.run(service, token)
        except NotConfiguredError as exc:
            return error(422, str(exc), "service")
        if service in SLACK_SERVICES:
            body = {
                "status": "success",
                "alert_types": self_test.alert_types,
                "message": "Mock Slack Alert sent, verify Slack Alert Received on your channel",
            }
            return _answer(outcomes, body, "The test Slack alert")
        message, what = _TESTED[service]
        return _answer(outcomes, {"status": "success", "message": message}, what)

    return Router(path="/", route_handlers=[health_services])
