"""Management changes published by admin: the source of the audit log."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from tollgate_shared import names
from tollgate_shared.events.base import Event
from tollgate_shared.vocabulary import AdminEntity


class AdminChanged(Event):
    """`admin.<entity>.<action>.v1`: who changed which entity, before and after."""

    event_type: ClassVar[str] = f"{names.ADMIN_PREFIX}.change.v1"
    entity: AdminEntity
    action: str = Field(pattern=r"^[a-z_]{1,40}$")
    object_id: str
    changed_by: str | None = None
    changed_by_api_key: str | None = None
    before_value: dict[str, Any] | None = None
    updated_values: dict[str, Any] | None = None

    def subject(self) -> str:
        return names.admin_subject(self.entity, self.action)
