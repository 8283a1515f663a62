"""Scheduled reports: daily deployment health, spend by team/key/model/tag, fallbacks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from tollgate_alerter.rules.alert import Alert
from tollgate_shared.vocabulary import AlertType

SPEND_SECTIONS = (("team", "Team"), ("key", "Key"), ("model", "Model"), ("tag", "Tag"))
REPORT_ROWS = 10


def _period(start: datetime, end: datetime) -> str:
    fmt = "%Y-%m-%d %H:%M UTC"
    return f"{start.astimezone(UTC).strftime(fmt)} - {end.astimezone(UTC).strftime(fmt)}"


def spend_report(sums: Mapping[str, Decimal], start: datetime, end: datetime) -> Alert | None:
    """Spend by team, key, model and tag over the period; None when nothing was spent."""
    if not any(v > 0 for v in sums.values()):
        return None
    days = (end - start).total_seconds() / 86400
    message = f"*💸 Spend Report for `{_period(start, end)}` ({days:.2g} days)*\n"
    for prefix, title in SPEND_SECTIONS:
        rows = sorted(
            ((k.split(":", 1)[1], v) for k, v in sums.items() if k.startswith(prefix + ":")),
            key=lambda kv: kv[1],
            reverse=True,
        )
        if not rows:
            continue
        message += f"\n*{title} Spend Report:*\n"
        for label, amount in rows[:REPORT_ROWS]:
            message += f"{title}: `{label}` | Spend: `${amount.quantize(Decimal('0.0001'))}`\n"
        if len(rows) > REPORT_ROWS:
            message += f"… and {len(rows) - REPORT_ROWS} more\n"
    return Alert(
        alert_type=AlertType.SPEND_REPORTS,
        level="Low",
        message=message,
        subject="spend_report",
        occurred_at=end,
        squash=False,
    )


@dataclass(frozen=True)
class DeploymentStats:
    label: str
    api_base: str
    failed: int = 0
    latency_s: float = 0.0
    output_tokens: int = 0
    successes: int = 0

    @property
    def latency_per_token(self) -> float:
        """Seconds per output token (seconds per call when calls produced no tokens)."""
        if self.output_tokens > 0:
            return self.latency_s / self.output_tokens
        return self.latency_s / self.successes if self.successes else 0.0


def daily_report(
    stats: Sequence[DeploymentStats], start: datetime, end: datetime, next_run: datetime
) -> Alert | None:
    """LiteLLM's daily report: top 5 deployments by failed requests and by latency per token."""
    failed = sorted((s for s in stats if s.failed > 0), key=lambda s: s.failed, reverse=True)[:5]
    slow = sorted(
        (s for s in stats if s.latency_per_token > 0),
        key=lambda s: s.latency_per_token,
        reverse=True,
    )[:5]
    if not failed and not slow:
        return None
    message = f"\n\nPeriod: `{_period(start, end)}`\nHere are today's key metrics 📈: \n\n"
    message += "\n\n*❗️ Top Deployments with Most Failed Requests:*\n\n"
    if not failed:
        message += "\tNone\n"
    for i, s in enumerate(failed, 1):
        message += (
            f"\t{i}. Deployment: `{s.label}`, Failed Requests: `{s.failed}`, "
            f" API Base: `{s.api_base}`\n"
        )
    message += "\n\n*😅 Top Slowest Deployments:*\n\n"
    if not slow:
        message += "\tNone\n"
    for i, s in enumerate(slow, 1):
        message += (
            f"\t{i}. Deployment: `{s.label}`, Latency per output token: "
            f"`{round(s.latency_per_token, 3)}s/token`,  API Base: `{s.api_base}`\n\n"
        )
    message += f"\n\nNext Run is at: `{next_run.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S UTC')}`"
    return Alert(
        alert_type=AlertType.DAILY_REPORTS,
        level="Low",
        message=message,
        subject="daily_report",
        occurred_at=end,
        squash=False,
    )


def fallback_report(counts: Mapping[str, int], start: datetime, end: datetime) -> Alert | None:
    rows = sorted(((k, v) for k, v in counts.items() if v > 0), key=lambda kv: kv[1], reverse=True)
    if not rows:
        return None
    message = f"*🔁 Fallback Report for `{_period(start, end)}`*\n\n"
    message += "".join(f"`{route}`: {n} fallbacks\n" for route, n in rows[: REPORT_ROWS * 2])
    return Alert(
        alert_type=AlertType.FALLBACK_REPORTS,
        level="Low",
        message=message,
        subject="fallback_report",
        occurred_at=end,
        squash=False,
    )
