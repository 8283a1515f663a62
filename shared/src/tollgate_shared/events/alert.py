"""What the alerter delivered, and where."""

from __future__ import annotations

from typing import ClassVar

from tollgate_shared import names
from tollgate_shared.events.base import Event


class AlertSent(Event):
    event_type: ClassVar[str] = names.ALERT_SENT
    alert_type: str
    level: str
    message: str
    destinations: list[str]
    dedup_key: str | None = None
    count: int = 1

    def subject(self) -> str:
        return names.alert_sent_subject(self.alert_type)
