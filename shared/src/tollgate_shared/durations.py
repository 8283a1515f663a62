"""LiteLLM's duration strings ("30s", "15m", "1h", "7d", "2w", "1mo", "1y") and budget periods.

One parser for every service: key expiry, budget resets, retention and report
intervals all read the same spelling.

Budget periods follow LiteLLM's calendar-aligned resets, so every replica of
every service computes the same boundaries without talking to the others:
a day resets at midnight in the configured timezone (`litellm_settings.timezone`,
UTC by default), a week (7d, 1w) on Monday at midnight, a month (30d, 1mo) on the
1st at midnight, a year on 1 January. Longer multiples (2d, 2w, 3mo, 2y) count
whole periods from a fixed origin (1970-01-01, its Monday, January 1970) so that
they too land on the same instants everywhere. Durations shorter than a day, and
those that are not a whole number of days, are aligned to multiples of their
length since the Unix epoch ("1h" resets on the hour, "30m" on :00 and :30).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_PATTERN = re.compile(r"^\s*(\d{1,9})\s*(s|sec|m|min|h|hr|d|w|mo|y)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_ALIASES = {"sec": "s", "min": "m", "hr": "h"}
_DAY = 86400
_WEEK = 7 * _DAY
_MAX_MONTHS = 1200  # a hundred years
_EPOCH_DAY = date(1970, 1, 1).toordinal()
_EPOCH_MONDAY = date(1970, 1, 5).toordinal()
_EPOCH_MONTH = 1970 * 12
_UTC = ZoneInfo("UTC")


@dataclass(frozen=True)
class Duration:
    """A parsed duration: a positive amount of seconds, days, weeks, months or years."""

    amount: int
    unit: str

    @property
    def months(self) -> int | None:
        """The length in calendar months, for "mo" and "y"; None for fixed lengths."""
        if self.unit == "mo":
            return self.amount
        if self.unit == "y":
            return 12 * self.amount
        return None

    @property
    def seconds(self) -> int:
        """The length in seconds; a month counts as 30 days and a year as 365."""
        if self.unit == "mo":
            return self.amount * 30 * _DAY
        if self.unit == "y":
            return self.amount * 365 * _DAY
        return self.amount * _UNIT_SECONDS[self.unit]

    def timedelta(self) -> timedelta:
        return timedelta(seconds=self.seconds)

    def after(self, start: datetime) -> datetime:
        """`start` plus this duration; months are calendar months (31 Jan + 1mo = 28/29 Feb)."""
        months = self.months
        if months is None:
            return start + self.timedelta()
        return _add_months(start, months)


def parse_duration(text: str) -> Duration:
    """Parse "30s", "15m", "1h", "7d", "2w", "1mo" or "1y"; ValueError says what is wrong."""
    match = _PATTERN.fullmatch(str(text))
    if not match:
        raise ValueError(
            f"{text!r} is not a duration; use a number and a unit "
            "(s, m, h, d, w, mo, y), e.g. '30s', '1h', '7d', '1mo'"
        )
    unit = match.group(2)
    duration = Duration(int(match.group(1)), _ALIASES.get(unit, unit))
    if duration.amount <= 0:
        raise ValueError(f"a duration must be positive, got {text!r}")
    if (duration.months or 0) > _MAX_MONTHS or duration.seconds > _MAX_MONTHS * 31 * _DAY:
        raise ValueError(f"{text!r} is longer than 100 years")
    return duration


def budget_timezone(name: str | None) -> ZoneInfo:
    """The zone budgets reset in; ValueError for a name the tz database does not know."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{name!r} is not an IANA timezone such as 'UTC' or 'US/Eastern'") from exc


def budget_period(
    duration: str | Duration, now: datetime, tz: ZoneInfo | None = None
) -> tuple[datetime, datetime]:
    """The budget period containing `now`: (start, next reset), both in UTC."""
    d = parse_duration(duration) if isinstance(duration, str) else duration
    zone = tz or _UTC
    today = now.astimezone(zone).date()
    months = d.months
    if months is None and d.seconds == 30 * _DAY:
        months = 1  # LiteLLM's "30d" is a calendar month
    if months is not None:
        index = today.year * 12 + today.month - 1
        first = index - (index - _EPOCH_MONTH) % months
        return _month_start(first, zone), _month_start(first + months, zone)
    if d.seconds % _DAY == 0:
        span = d.seconds // _DAY
        origin = _EPOCH_MONDAY if d.seconds % _WEEK == 0 else _EPOCH_DAY
        first = today.toordinal() - (today.toordinal() - origin) % span
        return _midnight(first, zone), _midnight(first + span, zone)
    stamp = int(now.timestamp())
    start = stamp - stamp % d.seconds
    return datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(start + d.seconds, UTC)


def current_period(
    duration: str | None, now: datetime, tz: ZoneInfo | None = None
) -> tuple[datetime, datetime] | None:
    """`budget_period` of a stored `budget_duration`; None when there is none (or it is
    unreadable: admin refuses those, so only a hand-edited value gets here)."""
    if not duration:
        return None
    try:
        return budget_period(duration, now, tz)
    except ValueError:
        return None


def _midnight(ordinal: int, zone: ZoneInfo) -> datetime:
    return datetime.combine(date.fromordinal(ordinal), time(0), tzinfo=zone).astimezone(UTC)


def _month_start(index: int, zone: ZoneInfo) -> datetime:
    first = date(index // 12, index % 12 + 1, 1)
    return datetime.combine(first, time(0), tzinfo=zone).astimezone(UTC)


def _add_months(start: datetime, months: int) -> datetime:
    index = start.month - 1 + months
    year = start.year + index // 12
    month = index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return start.replace(year=year, month=month, day=day)
