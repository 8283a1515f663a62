"""What the config says the ledger stores: the LedgerPolicy."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

from tollgate_shared import durations, names
from tollgate_shared.config import TollgateConfig
from tollgate_shared.events import LlmRequestFinished

# How long a request id must stay in `processed_requests` (the idempotency record): any
# message still in the LLM stream can be redelivered or replayed, and a spooled event
# reaches the stream after its start time, so the stream's age plus a margin for the
# spool. Retention never drops a younger partition of it.
IDEMPOTENCY_MARGIN = timedelta(days=2)
IDEMPOTENCY_WINDOW = timedelta(seconds=names.STREAM_LLM.max_age_s) + IDEMPOTENCY_MARGIN


def parse_duration(text: str) -> timedelta:
    """LiteLLM's duration strings: `30s`, `10m`, `12h`, `7d`, `2w`, `1mo`, `1y`."""
    return durations.parse_duration(text).timedelta()


@dataclass(frozen=True)
class LedgerPolicy:
    """What the config says the ledger stores."""

    store_prompts: bool = False
    disable_spend_logs: bool = False
    disable_error_logs: bool = False
    store_audit_logs: bool = False
    retention: timedelta | None = None  # spend_logs
    retention_interval: timedelta = timedelta(days=1)
    # Row-wise retention of the tables that are not partitioned; None keeps them.
    session_retention: timedelta | None = None
    daily_retention: timedelta | None = None
    audit_retention: timedelta | None = None
    idempotency_window: timedelta = IDEMPOTENCY_WINDOW

    @classmethod
    def from_config(cls, cfg: TollgateConfig) -> LedgerPolicy:
        gs = cfg.general_settings
        retention = _optional(gs.maximum_spend_logs_retention_period)
        return cls(
            store_prompts=gs.store_prompts_in_spend_logs,
            disable_spend_logs=gs.disable_spend_logs,
            disable_error_logs=gs.disable_error_logs,
            store_audit_logs=cfg.litellm_settings.store_audit_logs,
            retention=retention,
            retention_interval=_optional(gs.maximum_spend_logs_retention_interval)
            or timedelta(days=1),
            # Sessions summarise spend logs: by default they go with them.
            session_retention=_optional(gs.maximum_session_logs_retention_period) or retention,
            daily_retention=_optional(gs.maximum_daily_spend_retention_period),
            # The audit log is kept longest: only its own setting prunes it.
            audit_retention=_optional(gs.maximum_audit_logs_retention_period),
        )

    def for_stream_age(self, max_age_s: float | None) -> LedgerPolicy:
        """The policy with the idempotency window of the LLM stream as provisioned (an
        unlimited stream keeps every request id: any message may come back)."""
        age = timedelta(days=365 * 100) if not max_age_s else timedelta(seconds=max_age_s)
        return replace(self, idempotency_window=age + IDEMPOTENCY_MARGIN)

    @property
    def idempotency_retention(self) -> timedelta | None:
        """How long `processed_requests` partitions live: never less than the window."""
        if self.retention is None:
            return None
        return max(self.retention, self.idempotency_window)

    @property
    def prunes_anything(self) -> bool:
        return any(
            r is not None
            for r in (
                self.retention,
                self.session_retention,
                self.daily_retention,
                self.audit_retention,
            )
        )

    def stores_log(self, status: str) -> bool:
        """Whether a call with this status gets a spend_logs row."""
        if self.disable_spend_logs:
            return False
        return not (status == "failure" and self.disable_error_logs)

    def needs_content(self, event: LlmRequestFinished) -> bool:
        """Whether an offloaded event's content must be fetched before writing it."""
        return bool(event.content_ref) and self.store_prompts and self.stores_log(event.status)  # type: ignore[attr-defined]


def _optional(text: str | None) -> timedelta | None:
    return parse_duration(text) if text else None
