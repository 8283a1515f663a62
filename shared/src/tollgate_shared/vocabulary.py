"""The closed vocabularies services exchange: producers, admin entities and actions,
spend entities, deployment states, service conditions and alert types, each spelled once."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, get_args

# The five services, and the supervisor of `./just up` (it publishes `ops.*` events).
Producer = Literal["ingress", "admin", "ledger", "exporter", "alerter", "supervisor"]
PRODUCERS: tuple[str, ...] = get_args(Producer)

AdminEntity = Literal["key", "team", "user", "model", "team_callback"]
ADMIN_ENTITIES: tuple[str, ...] = get_args(AdminEntity)

AdminAction = Literal[
    "created",
    "updated",
    "deleted",
    "rotated",
    "blocked",
    "unblocked",
    "member_added",
    "member_removed",
    "callback_added",
    "logging_disabled",
]
ADMIN_ACTIONS: tuple[str, ...] = get_args(AdminAction)

# Entities whose spend the ledger totals (and mirrors to KV for budgets).
SpendEntity = Literal["key", "team", "user", "end_user", "tag", "model"]
SPEND_ENTITIES: tuple[str, ...] = get_args(SpendEntity)

DeploymentState = Literal["cooled_down", "recovered", "fallback"]
DEPLOYMENT_STATES: tuple[str, ...] = get_args(DeploymentState)

# What the supervisor says about a service or server it runs: it entered a crash loop
# (N exits within M seconds), or it ran stable again after one.
ServiceCondition = Literal["crash_loop", "recovered"]
SERVICE_CONDITIONS: tuple[str, ...] = get_args(ServiceCondition)


class AlertType(StrEnum):
    """LiteLLM's `alert_types`, by the names its config and webhooks use, and Tollgate's own
    (listed last, marked as such: LiteLLM has no equivalent)."""

    LLM_EXCEPTIONS = "llm_exceptions"
    LLM_TOO_SLOW = "llm_too_slow"
    LLM_REQUESTS_HANGING = "llm_requests_hanging"
    BUDGET_ALERTS = "budget_alerts"
    SPEND_REPORTS = "spend_reports"
    FAILED_TRACKING_SPEND = "failed_tracking_spend"
    DB_EXCEPTIONS = "db_exceptions"
    DAILY_REPORTS = "daily_reports"
    COOLDOWN_DEPLOYMENT = "cooldown_deployment"
    NEW_MODEL_ADDED = "new_model_added"
    OUTAGE_ALERTS = "outage_alerts"
    REGION_OUTAGE_ALERTS = "region_outage_alerts"
    FALLBACK_REPORTS = "fallback_reports"
    NEW_VIRTUAL_KEY_CREATED = "new_virtual_key_created"
    VIRTUAL_KEY_UPDATED = "virtual_key_updated"
    VIRTUAL_KEY_DELETED = "virtual_key_deleted"
    NEW_TEAM_CREATED = "new_team_created"
    TEAM_UPDATED = "team_updated"
    TEAM_DELETED = "team_deleted"
    NEW_INTERNAL_USER_CREATED = "new_internal_user_created"
    INTERNAL_USER_UPDATED = "internal_user_updated"
    INTERNAL_USER_DELETED = "internal_user_deleted"
    # Tollgate's own (not LiteLLM's): a service or embedded server supervised by `./just up`
    # crash-loops (and, in the same alert type, recovers); from `ops.service.*.v1`.
    SERVICE_CRASH_LOOP = "service_crash_loop"


ALERT_TYPES: tuple[str, ...] = tuple(t.value for t in AlertType)
