"""Ledger outcomes: spend totals after a commit, and tracking or database failures."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from tollgate_shared import names
from tollgate_shared.events.base import Event, Money


class SpendTotal(BaseModel):
    model_config = ConfigDict(frozen=True)
    entity: Literal["key", "team", "user", "end_user", "tag", "model"]
    entity_id: str
    spend: Money = Field(description="spend in the current budget period (lifetime without one)")
    max_budget: Money | None = None
    period_start: datetime | None = Field(None, description="when the budget period began")
    budget_reset_at: datetime | None = Field(None, description="when the next period begins")


class LedgerSpendUpdated(Event):
    """Spend totals of the keys, teams and users touched by one committed batch."""

    event_type: ClassVar[str] = names.LEDGER_SPEND_UPDATED
    totals: list[SpendTotal]


class LedgerTrackingFailed(Event):
    """An event could not be turned into a spend record (poison or invalid)."""

    event_type: ClassVar[str] = names.LEDGER_TRACKING_FAILED
    request_id: str | None = None
    subject_name: str
    error: str


class LedgerDbError(Event):
    """Writing a batch to the database failed; the batch will be redelivered."""

    event_type: ClassVar[str] = names.LEDGER_DB_ERROR
    error: str
    batch_size: int
