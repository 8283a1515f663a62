"""Audit rows: an admin change as LiteLLM's LiteLLM_AuditLog records it, secrets masked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tollgate_ledger.rows import json_text, utc
from tollgate_shared.events import AdminChanged
from tollgate_shared.redaction import mask_secrets

# LiteLLM's table names in LiteLLM_AuditLog, by Tollgate admin entity.
AUDIT_TABLE_NAMES: dict[str, str] = {
    "key": "LiteLLM_VerificationToken",
    "team": "LiteLLM_TeamTable",
    "user": "LiteLLM_UserTable",
    "model": "LiteLLM_ProxyModelTable",
    "team_callback": "LiteLLM_TeamTable",
}


@dataclass(frozen=True)
class AuditRow:
    id: str
    updated_at: datetime
    changed_by: str | None
    changed_by_api_key: str | None
    action: str
    table_name: str
    object_id: str
    before_value: str | None
    updated_values: str | None


def audit_row(event: AdminChanged) -> AuditRow:
    return AuditRow(
        id=event.event_id,
        updated_at=utc(event.occurred_at),
        changed_by=event.changed_by,
        changed_by_api_key=event.changed_by_api_key,
        action=event.action,
        table_name=AUDIT_TABLE_NAMES.get(event.entity, event.entity),
        object_id=event.object_id,
        before_value=json_text(mask_secrets(event.before_value)),
        updated_values=json_text(mask_secrets(event.updated_values)),
    )


def audit_table_filter(value: str) -> str:
    """`table_name` filter: LiteLLM's table name, or Tollgate's entity name (`key`, ...)."""
    return AUDIT_TABLE_NAMES.get(value, value)
