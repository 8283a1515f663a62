"""What the config says the ledger stores: the LedgerPolicy."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from tollgate_shared import durations
from tollgate_shared.config import TollgateConfig
from tollgate_shared.events import LlmRequestFinished


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
    retention: timedelta | None = None
    retention_interval: timedelta = timedelta(days=1)

    @classmethod
    def from_config(cls, cfg: TollgateConfig) -> LedgerPolicy:
        gs = cfg.general_settings
        return cls(
            store_prompts=gs.store_prompts_in_spend_logs,
            disable_spend_logs=gs.disable_spend_logs,
            disable_error_logs=gs.disable_error_logs,
            store_audit_logs=cfg.litellm_settings.store_audit_logs,
            retention=parse_duration(gs.maximum_spend_logs_retention_period)
            if gs.maximum_spend_logs_retention_period
            else None,
            retention_interval=parse_duration(gs.maximum_spend_logs_retention_interval)
            if gs.maximum_spend_logs_retention_interval
            else timedelta(days=1),
        )

    def stores_log(self, status: str) -> bool:
        """Whether a call with this status gets a spend_logs row."""
        if self.disable_spend_logs:
            return False
        return not (status == "failure" and self.disable_error_logs)

    def needs_content(self, event: LlmRequestFinished) -> bool:
        """Whether an offloaded event's content must be fetched before writing it."""
        return bool(event.content_ref) and self.store_prompts and self.stores_log(event.status)  # type: ignore[attr-defined]
