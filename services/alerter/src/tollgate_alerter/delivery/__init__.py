"""Alert delivery: destinations (Slack-compatible, PagerDuty, webhook, SMTP) and the dispatcher."""

from tollgate_alerter.delivery.destinations import (
    PAGERDUTY_EVENTS_URL,
    DeliveryError,
    GenericWebhook,
    PagerDuty,
    RetryPolicy,
    SlackWebhook,
    SmtpMailer,
)
from tollgate_alerter.delivery.dispatcher import Destinations, Dispatcher, Outcome

__all__ = [
    "PAGERDUTY_EVENTS_URL",
    "DeliveryError",
    "Destinations",
    "Dispatcher",
    "GenericWebhook",
    "Outcome",
    "PagerDuty",
    "RetryPolicy",
    "SlackWebhook",
    "SmtpMailer",
]
