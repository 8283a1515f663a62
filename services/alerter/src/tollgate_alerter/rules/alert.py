"""The alert every rule produces: type, level, text, and how it is de-duplicated."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from tollgate_shared.vocabulary import AlertType

Level = Literal["Low", "Medium", "High"]

# Per-event alerts are claimed by event id for this long, so a redelivered or
# twice-delivered event alerts once across replicas.
EVENT_CLAIM_TTL_S = 3600.0
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class Alert:
    """One alert, ready for delivery."""

    alert_type: AlertType
    level: Level
    message: str
    subject: str
    occurred_at: datetime
    details: Mapping[str, str] = field(default_factory=dict)
    # Redis claim that makes this alert unique across replicas and redeliveries.
    dedup_key: str | None = None
    dedup_ttl_s: float | None = None
    # LiteLLM's webhook event (budget_crossed, threshold_crossed, key_created, ...).
    webhook_event: Mapping[str, Any] | None = None
    email_to: tuple[str, ...] = ()
    request_id: str | None = None
    # False: send at once instead of folding repeats within the anti-storm window.
    squash: bool = True

    @property
    def headline(self) -> str:
        """The first meaningful line, for PagerDuty summaries and e-mail subjects."""
        for line in self.message.splitlines():
            text = line.strip().strip("*`").strip()
            if text:
                return text[:200]
        return self.alert_type

    @property
    def incident_key(self) -> str:
        """Stable per alert type and subject, so repeats update one incident."""
        return f"tollgate/{self.alert_type}/{self.subject}"
