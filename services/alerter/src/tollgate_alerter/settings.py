"""Settings of the alerter service (environment `TOLLGATE_*`, plus LiteLLM's alerting variables)."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import AliasChoices, Field

from tollgate_alerter.delivery.destinations import PAGERDUTY_EVENTS_URL
from tollgate_shared.settings import ServiceSettings


def _litellm_env(name: str) -> AliasChoices:
    """Read LiteLLM's variable name as is (no TOLLGATE_ prefix), or the field name."""
    return AliasChoices(name, name.lower())


class AlerterSettings(ServiceSettings):
    port: int = 4004
    # Redis keys live under this prefix (replicas of one deployment share it).
    redis_prefix: str = "tollgate:alerter"
    # Anti-storm: the same alert type for the same subject within this window is
    # sent once, with `[Num Alerts: N]`. 0 sends every alert at once.
    alert_window_s: float = Field(10.0, ge=0)
    # How often to look for hanging requests; default: a fifth of alerting_threshold (0.2-10 s).
    hanging_check_interval_s: float | None = Field(None, gt=0)
    # LiteLLM reports fallbacks weekly.
    fallback_report_frequency: str = "7d"
    # Delivery: attempts per destination, exponential backoff with jitter, HTTP timeout.
    delivery_attempts: int = Field(5, ge=1)
    delivery_backoff_s: float = Field(0.5, ge=0)
    delivery_backoff_max_s: float = Field(8.0, ge=0)
    delivery_timeout_s: float = Field(10.0, gt=0)
    pagerduty_events_url: str = PAGERDUTY_EVENTS_URL
    # Alerts at or above this level page through PagerDuty.
    pagerduty_min_level: Literal["Low", "Medium", "High"] = "Medium"
    # Operators who receive every alert by e-mail when "email" is in `alerting` (comma-separated).
    alert_email_to: str = ""

    # LiteLLM's environment variables, under their own names.
    slack_webhook_url: str | None = Field(None, validation_alias=_litellm_env("SLACK_WEBHOOK_URL"))
    webhook_url: str | None = Field(None, validation_alias=_litellm_env("WEBHOOK_URL"))
    pagerduty_api_key: str | None = Field(None, validation_alias=_litellm_env("PAGERDUTY_API_KEY"))
    smtp_host: str | None = Field(None, validation_alias=_litellm_env("SMTP_HOST"))
    smtp_port: int = Field(587, validation_alias=_litellm_env("SMTP_PORT"))
    smtp_username: str | None = Field(None, validation_alias=_litellm_env("SMTP_USERNAME"))
    smtp_password: str | None = Field(None, validation_alias=_litellm_env("SMTP_PASSWORD"))
    smtp_sender_email: str | None = Field(None, validation_alias=_litellm_env("SMTP_SENDER_EMAIL"))
    smtp_tls: bool = Field(True, validation_alias=_litellm_env("SMTP_TLS"))

    def with_environment(self) -> AlerterSettings:
        """Fill LiteLLM variables exported later by config.yaml's `environment_variables`."""
        updates: dict[str, object] = {}
        for field, env in (
            ("slack_webhook_url", "SLACK_WEBHOOK_URL"),
            ("webhook_url", "WEBHOOK_URL"),
            ("pagerduty_api_key", "PAGERDUTY_API_KEY"),
            ("smtp_host", "SMTP_HOST"),
            ("smtp_username", "SMTP_USERNAME"),
            ("smtp_password", "SMTP_PASSWORD"),
            ("smtp_sender_email", "SMTP_SENDER_EMAIL"),
        ):
            if getattr(self, field) is None and os.environ.get(env):
                updates[field] = os.environ[env]
        return self.model_copy(update=updates) if updates else self

    @property
    def email_recipients(self) -> tuple[str, ...]:
        return tuple(a.strip() for a in self.alert_email_to.split(",") if a.strip())
