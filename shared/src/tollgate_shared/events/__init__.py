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

__all__ = [
    "EVENT_TYPES",
    "AdminChanged",
    "AlertSent",
    "DeploymentStateChanged",
    "Event",
    "ExportDeadLettered",
    "LedgerDbError",
    "LedgerSpendUpdated",
    "LedgerTrackingFailed",
    "LlmRequestCompleted",
    "LlmRequestFailed",
    "LlmRequestFinished",
    "LlmRequestStarted",
    "Money",
    "SpendTotal",
    "event_class_for_subject",
    "new_event_id",
    "utcnow",
]

EVENT_TYPES: tuple[type[Event], ...] = (
    LlmRequestStarted,
    LlmRequestCompleted,
    LlmRequestFailed,
    DeploymentStateChanged,
    AdminChanged,
    LedgerSpendUpdated,
    LedgerTrackingFailed,
    LedgerDbError,
    AlertSent,
    ExportDeadLettered,
)


def event_class_for_subject(subject: str) -> type[Event]:
    """The event class published on `subject` (the inverse of `Event.subject`)."""
    parts = subject.split(".")
    if subject.startswith("llm.request."):
        base = ".".join(parts[:4])
        for cls in (LlmRequestStarted, LlmRequestCompleted, LlmRequestFailed):
            if cls.event_type == base:
                return cls
    elif subject.startswith("llm.deployment."):
        return DeploymentStateChanged
    elif subject.startswith("admin."):
        return AdminChanged
    elif subject.startswith("alert.sent."):
        return AlertSent
    elif subject == ExportDeadLettered.event_type:
        return ExportDeadLettered
    else:
        for ledger_cls in (LedgerSpendUpdated, LedgerTrackingFailed, LedgerDbError):
            if ledger_cls.event_type == subject:
                return ledger_cls
    raise LookupError(f"no event class for subject {subject!r}")
