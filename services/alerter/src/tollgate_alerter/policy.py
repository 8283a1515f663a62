"""What to alert on and where: LiteLLM's `general_settings` alerting keys, validated at start."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tollgate_shared import durations
from tollgate_shared.config import ConfigError, GeneralSettings
from tollgate_shared.vocabulary import AlertType

log = logging.getLogger(__name__)

# LiteLLM's alert types, grouped as its documentation groups them, and Tollgate's own
# (together: all of AlertType).
LLM_ALERT_TYPES = (
    AlertType.LLM_EXCEPTIONS,
    AlertType.LLM_TOO_SLOW,
    AlertType.LLM_REQUESTS_HANGING,
    AlertType.COOLDOWN_DEPLOYMENT,
    AlertType.NEW_MODEL_ADDED,
    AlertType.OUTAGE_ALERTS,
    AlertType.REGION_OUTAGE_ALERTS,
)
SPEND_ALERT_TYPES = (
    AlertType.BUDGET_ALERTS,
    AlertType.SPEND_REPORTS,
    AlertType.FAILED_TRACKING_SPEND,
    AlertType.DAILY_REPORTS,
    AlertType.FALLBACK_REPORTS,
)
DB_ALERT_TYPES = (AlertType.DB_EXCEPTIONS,)
MANAGEMENT_ALERT_TYPES = (
    AlertType.NEW_VIRTUAL_KEY_CREATED,
    AlertType.VIRTUAL_KEY_UPDATED,
    AlertType.VIRTUAL_KEY_DELETED,
    AlertType.NEW_TEAM_CREATED,
    AlertType.TEAM_UPDATED,
    AlertType.TEAM_DELETED,
    AlertType.NEW_INTERNAL_USER_CREATED,
    AlertType.INTERNAL_USER_UPDATED,
    AlertType.INTERNAL_USER_DELETED,
)
# Tollgate's own (LiteLLM has no equivalent): on by default like LiteLLM's operational types.
OPS_ALERT_TYPES = (AlertType.SERVICE_CRASH_LOOP,)
ALL_ALERT_TYPES = (
    LLM_ALERT_TYPES + SPEND_ALERT_TYPES + DB_ALERT_TYPES + MANAGEMENT_ALERT_TYPES + OPS_ALERT_TYPES
)
# When `alert_types` is absent: everything except the management alerts (as LiteLLM).
DEFAULT_ALERT_TYPES = LLM_ALERT_TYPES + SPEND_ALERT_TYPES + DB_ALERT_TYPES + OPS_ALERT_TYPES

# Discord (`.../slack`) and Microsoft Teams accept Slack's payload unchanged.
SLACK_COMPATIBLE = frozenset({"slack", "discord", "msteams"})


class AlertingArgs(BaseModel):
    """`general_settings.alerting_args`, with LiteLLM's defaults (seconds and counts)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    daily_report_frequency: float = Field(12 * 3600, gt=0)
    report_check_interval: float = Field(3600, gt=0)
    budget_alert_ttl: float = Field(24 * 3600, gt=0)
    outage_alert_ttl: float = Field(60, gt=0)
    region_outage_alert_ttl: float = Field(60, gt=0)
    minor_outage_alert_threshold: int = Field(5, ge=1)
    major_outage_alert_threshold: int = Field(10, ge=1)
    max_outage_alert_list_size: int = Field(1000, ge=1)
    log_to_console: bool = False


def parse_duration(value: str | float | int, path: str) -> float:
    """LiteLLM's durations ("30s", "1h", "1d", "7d", "1mo") or plain seconds, as seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        try:
            seconds = float(value)  # plain seconds written as text
        except ValueError:
            try:
                seconds = float(durations.parse_duration(str(value)).seconds)
            except ValueError as exc:
                raise ConfigError(f"{path}: {exc}") from None
    if seconds <= 0:
        raise ConfigError(f"{path}: must be greater than zero")
    return seconds


@dataclass(frozen=True)
class AlertPolicy:
    """The alerting configuration in force: destinations, enabled types, thresholds and routes."""

    destinations: frozenset[str] = frozenset()
    threshold_s: float = 300.0
    alert_types: frozenset[AlertType] = frozenset(DEFAULT_ALERT_TYPES)
    args: AlertingArgs = field(default_factory=AlertingArgs)
    # alert_to_webhook_url: per alert type, the Slack-compatible URLs that replace the default.
    webhook_urls: Mapping[AlertType, tuple[str, ...]] = field(default_factory=dict)
    # spend_report_frequency; LiteLLM sends a weekly report when it is not set.
    spend_report_every_s: float = 7 * 86400.0

    @property
    def slack_enabled(self) -> bool:
        return bool(self.destinations & SLACK_COMPATIBLE)

    def enabled(self, alert_type: AlertType) -> bool:
        return alert_type in self.alert_types

    def slack_urls(self, alert_type: AlertType, default_url: str | None) -> tuple[str, ...]:
        """Where a Slack-style alert of this type goes: its own URLs, else the default."""
        if alert_type in self.webhook_urls:
            return self.webhook_urls[alert_type]
        return (default_url,) if default_url else ()

    def all_slack_urls(self, default_url: str | None) -> tuple[str, ...]:
        """Every configured Slack-compatible URL once (for the test alert)."""
        urls = [default_url] if default_url else []
        for alert_type, routed in self.webhook_urls.items():
            if self.enabled(alert_type):
                urls.extend(routed)
        return tuple(dict.fromkeys(urls))


def _check_type(alert_type: object, path: str) -> AlertType:
    """A configured alert type as LiteLLM's vocabulary; an unknown one names its key."""
    if isinstance(alert_type, str):
        with contextlib.suppress(ValueError):
            return AlertType(alert_type)
    known = ", ".join(AlertType)
    raise ConfigError(f"{path}: unknown alert type {alert_type!r}; expected one of {known}")


def policy_from_settings(general: GeneralSettings) -> AlertPolicy:
    """Validate the alerting keys of `general_settings`; a bad value names its key."""
    base = "general_settings"
    types = (
        DEFAULT_ALERT_TYPES
        if general.alert_types is None
        else tuple(
            _check_type(t, f"{base}.alert_types[{i}]") for i, t in enumerate(general.alert_types)
        )
    )
    try:
        args = AlertingArgs.model_validate(general.alerting_args or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{base}.alerting_args.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors()
        )
        raise ConfigError(problems) from None
    for extra in args.model_extra or {}:
        log.warning("%s.alerting_args.%s is not a known alerting arg (ignored)", base, extra)
    if args.major_outage_alert_threshold < args.minor_outage_alert_threshold:
        raise ConfigError(
            f"{base}.alerting_args.major_outage_alert_threshold: must not be below "
            "minor_outage_alert_threshold"
        )
    routes: dict[AlertType, tuple[str, ...]] = {}
    for alert_type, urls in (general.alert_to_webhook_url or {}).items():
        path = f"{base}.alert_to_webhook_url.{alert_type}"
        checked = _check_type(alert_type, path)
        listed = [urls] if isinstance(urls, str) else list(urls)
        for i, url in enumerate(listed):
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"{path}[{i}]: {url!r} is not an http(s) URL")
        routes[checked] = tuple(listed)
    every = (
        parse_duration(general.spend_report_frequency, f"{base}.spend_report_frequency")
        if general.spend_report_frequency
        else 7 * 86400.0
    )
    return AlertPolicy(
        destinations=frozenset(general.alerting),
        threshold_s=float(general.alerting_threshold),
        alert_types=frozenset(types),
        args=args,
        webhook_urls=routes,
        spend_report_every_s=every,
    )
