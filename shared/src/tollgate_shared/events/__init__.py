"""Event models: one frozen class per event and major version."""

from __future__ import annotations

from tollgate_shared.events.admin import AdminChanged
from tollgate_shared.events.alert import AlertSent
from tollgate_shared.events.base import Event, Money, new_event_id, utcnow
from tollgate_shared.events.export import ExportDeadLettered
from tollgate_shared.events.ledger import (
    LedgerDbError,
    LedgerSpendUpdated,
    LedgerTrackingFailed,
    SpendTotal,
)
from tollgate_shared.events.llm import (
    DeploymentStateChanged,
    LlmRequestCompleted,
    LlmRequestFailed,
    LlmRequestFinished,
    LlmRequestStarted,
)
from tollgate_shared.events.ops import ServiceCrashLoop
from tollgate_shared.events.registry import (
    CATALOG,
    EVENT_TYPES,
    EventDecodeError,
    UnknownEventError,
    UnknownEventVersionError,
    decode,
    event_class_for_subject,
)

__all__ = [
    "CATALOG",
    "EVENT_TYPES",
    "AdminChanged",
    "AlertSent",
    "DeploymentStateChanged",
    "Event",
    "EventDecodeError",
    "ExportDeadLettered",
    "LedgerDbError",
    "LedgerSpendUpdated",
    "LedgerTrackingFailed",
    "LlmRequestCompleted",
    "LlmRequestFailed",
    "LlmRequestFinished",
    "LlmRequestStarted",
    "Money",
    "ServiceCrashLoop",
    "SpendTotal",
    "UnknownEventError",
    "UnknownEventVersionError",
    "decode",
    "event_class_for_subject",
    "new_event_id",
    "utcnow",
]
