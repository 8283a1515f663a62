"""Pure alert rules: which events deserve an alert, at what level, and what it says.

Nothing here does I/O. Stateful rules (outages, hanging requests, budgets,
reports) take the counts their state adapter measured and decide from those.
Messages carry what an on-call engineer needs (model, deployment, API base,
key alias, team, request id, error, counts) and never request or response content.

One module per family: `llm` (exceptions, too slow, hanging), `outages` (model and
region outages), `router` (cooldown, fallbacks), `budgets`, `ledger` (tracking and
database failures), `management` (key/team/user/model changes), `reports` (daily,
spend, fallback), `health_checks` (test alerts), `ops` (Tollgate's own: crash loops);
`alert` is what they all return and `formatting` the message text they share.
"""

from tollgate_alerter.rules.alert import EVENT_CLAIM_TTL_S, MAX_ERROR_CHARS, Alert, Level
from tollgate_alerter.rules.budgets import BudgetLevel, EntityInfo, budget_alert, budget_level
from tollgate_alerter.rules.formatting import (
    RAW_TEXT_TYPES,
    deployment_subject,
    details_text,
    request_details,
    safe_api_base,
    slack_text,
)
from tollgate_alerter.rules.health_checks import health_check_alert, health_check_webhook_event
from tollgate_alerter.rules.ledger import db_error_alert, tracking_failed_alert
from tollgate_alerter.rules.llm import (
    CLIENT_CLOSED,
    exception_alert,
    hanging_alert,
    hanging_deadline,
    hanging_record,
    is_llm_failure,
    slow_alert,
)
from tollgate_alerter.rules.management import management_alert, management_type, new_model_alert
from tollgate_alerter.rules.ops import CRASH_LOOP_CLAIM_TTL_S, crash_loop_alert
from tollgate_alerter.rules.outages import (
    OutageLevel,
    error_breakdown,
    outage_alert,
    outage_code,
    outage_levels,
    region_of,
)
from tollgate_alerter.rules.reports import (
    DeploymentStats,
    daily_report,
    fallback_report,
    spend_report,
)
from tollgate_alerter.rules.router import cooldown_alert, fallback_field

__all__ = [
    "CLIENT_CLOSED",
    "CRASH_LOOP_CLAIM_TTL_S",
    "EVENT_CLAIM_TTL_S",
    "MAX_ERROR_CHARS",
    "RAW_TEXT_TYPES",
    "Alert",
    "BudgetLevel",
    "DeploymentStats",
    "EntityInfo",
    "Level",
    "OutageLevel",
    "budget_alert",
    "budget_level",
    "cooldown_alert",
    "crash_loop_alert",
    "daily_report",
    "db_error_alert",
    "deployment_subject",
    "details_text",
    "error_breakdown",
    "exception_alert",
    "fallback_field",
    "fallback_report",
    "hanging_alert",
    "hanging_deadline",
    "hanging_record",
    "health_check_alert",
    "health_check_webhook_event",
    "is_llm_failure",
    "management_alert",
    "management_type",
    "new_model_alert",
    "outage_alert",
    "outage_code",
    "outage_levels",
    "region_of",
    "request_details",
    "safe_api_base",
    "slack_text",
    "slow_alert",
    "spend_report",
    "tracking_failed_alert",
]
