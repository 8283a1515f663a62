"""Settings of the ledger service (environment `TOLLGATE_*`)."""

from __future__ import annotations

from pydantic import Field

from tollgate_shared.settings import ServiceSettings


class LedgerSettings(ServiceSettings):
    port: int = 4002
    # Set false to serve reads only (e.g. a read replica of the API).
    consumers_enabled: bool = True
    # Apply pending migrations at start (under the runner's advisory lock).
    migrate_on_start: bool = True
    # Per batch the consumer pays a transaction, its round trips and an announcement: at
    # 2,000 an event costs about a fifth less than at 500 (the ingest bench). A fetch still
    # returns what arrived within its timeout, so a quiet stream gives small batches.
    spend_batch_size: int = Field(2000, ge=1, le=20_000)
    # Spend batches committing at once, each in its own transaction (as on two replicas):
    # while one waits on PostgreSQL the next one's rows go out.
    spend_commits: int = Field(2, ge=1, le=8)
    audit_batch_size: int = Field(200, ge=1, le=20_000)
    db_pool_size: int = Field(5, ge=2, le=100)
    # How often budget periods (`budget_duration`) are checked for a reset, in seconds.
    budget_reset_interval_s: float = Field(5.0, gt=0, le=3600)
