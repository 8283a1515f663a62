"""Retrying deliveries politely: exponential backoff with jitter that honours `Retry-After`.

Exporter sinks and alert destinations both retry 429/5xx answers with tenacity.
When the destination says how long to wait (`Retry-After: 30` or an HTTP date),
that wait replaces the backoff, capped so one destination's hint can never hold
a worker longer than the caller allows.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from tenacity import RetryCallState, wait_exponential_jitter
from tenacity.wait import wait_base


def retry_after_s(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds a `Retry-After` header asks for (delta-seconds or HTTP-date); None if absent
    or unreadable."""
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    if raw.isdigit():
        return float(raw)
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class wait_retry_after(wait_base):  # noqa: N801 - tenacity's naming for wait strategies
    """Wait what the failed attempt's `retry_after` attribute asks (at most `cap` seconds),
    else exponential backoff with jitter."""

    def __init__(self, *, initial: float, maximum: float, cap: float) -> None:
        self._backoff = wait_exponential_jitter(multiplier=initial, max=maximum, jitter=initial)
        self._cap = cap

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        hint = getattr(exc, "retry_after", None)
        if isinstance(hint, int | float) and hint >= 0:
            return min(float(hint), self._cap)
        return float(self._backoff(retry_state))
