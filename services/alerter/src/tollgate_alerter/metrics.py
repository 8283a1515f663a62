"""The alerter's Prometheus metrics: alerts sent, failed and suppressed, per type."""

from __future__ import annotations

from prometheus_client import Counter

ALERTS_SENT = Counter(
    "tollgate_alerts_sent_total",
    "Alerts a destination accepted",
    ["alert_type", "destination"],
)
ALERTS_FAILED = Counter(
    "tollgate_alerts_failed_total",
    "Alerts a destination did not accept after the last retry",
    ["alert_type", "destination"],
)
ALERTS_SUPPRESSED = Counter(
    "tollgate_alerts_suppressed_total",
    "Alerts not sent: already sent by a replica or earlier (dedup), or folded into one (storm)",
    ["alert_type", "reason"],
)
DELIVERY_RETRIES = Counter(
    "tollgate_alert_delivery_retries_total",
    "Extra delivery attempts after a 429, 5xx or network error",
    ["destination"],
)
EVENTS_EVALUATED = Counter(
    "tollgate_alerter_events_total",
    "Events the alerter evaluated, by consumer and outcome (ack, nak, term)",
    ["consumer", "outcome"],
)
REPORTS_SENT = Counter(
    "tollgate_alerter_reports_total", "Scheduled reports built by this replica", ["report"]
)
