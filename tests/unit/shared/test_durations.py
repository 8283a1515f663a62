"""Durations and budget periods: one spelling for every service, calendar-aligned resets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tollgate_shared.durations import (
    budget_period,
    budget_timezone,
    current_period,
    parse_duration,
)
from tollgate_shared.state import SpendState

NOW = datetime(2026, 11, 25, 15, 42, 7, tzinfo=UTC)  # a Wednesday


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("30sec", 30),
        ("15m", 900),
        ("15min", 900),
        ("2h", 7200),
        ("2hr", 7200),
        ("7d", 7 * 86400),
        (" 2w ", 14 * 86400),
        ("1mo", 30 * 86400),
        ("1y", 365 * 86400),
    ],
)
def test_parse(text: str, seconds: int) -> None:
    assert parse_duration(text).seconds == seconds


# Bad input tried: empty, words, no unit, no number, negative, zero, fractions, compound
# durations, unknown units and lengths beyond a hundred years.
@pytest.mark.parametrize(
    "bad", ["", "soon", "10", "d", "-1d", "0s", "1.5h", "1h30m", "3q", "99999999d", "2000mo"]
)
def test_bad_durations_say_why(bad: str) -> None:
    with pytest.raises(ValueError, match=r"duration|longer"):
        parse_duration(bad)


def test_months_are_calendar_months() -> None:
    assert parse_duration("1mo").after(utc(2025, 1, 31, 12)) == utc(2025, 2, 28, 12)
    assert parse_duration("1y").after(utc(2024, 2, 29)) == utc(2025, 2, 28)


@pytest.mark.parametrize(
    ("duration", "start", "end"),
    [
        ("1d", utc(2026, 11, 25), utc(2026, 11, 26)),
        ("24h", utc(2026, 11, 25), utc(2026, 11, 26)),
        ("7d", utc(2026, 11, 23), utc(2026, 11, 30)),  # Monday to Monday
        ("1w", utc(2026, 11, 23), utc(2026, 11, 30)),
        ("30d", utc(2026, 11, 1), utc(2026, 12, 1)),  # LiteLLM: 30d is the calendar month
        ("1mo", utc(2026, 11, 1), utc(2026, 12, 1)),
        ("1y", utc(2026, 1, 1), utc(2027, 1, 1)),
        ("1h", utc(2026, 11, 25, 15), utc(2026, 11, 25, 16)),
        ("30m", utc(2026, 11, 25, 15, 30), utc(2026, 11, 25, 16)),
        ("10s", utc(2026, 11, 25, 15, 42), utc(2026, 11, 25, 15, 42, 10)),
    ],
)
def test_budget_periods_align_to_the_calendar(
    duration: str, start: datetime, end: datetime
) -> None:
    assert budget_period(duration, NOW) == (start, end)


@pytest.mark.parametrize("duration", ["2d", "2w", "3mo", "90m", "36h", "45d"])
def test_periods_are_contiguous_and_contain_now(duration: str) -> None:
    start, end = budget_period(duration, NOW)
    assert start <= NOW < end
    # The next period starts where this one ends, and every replica computes the same.
    assert budget_period(duration, end)[0] == end
    assert budget_period(duration, end - timedelta(microseconds=1)) == (start, end)


def test_timezone_moves_midnight_and_handles_dst() -> None:
    eastern = budget_timezone("US/Eastern")
    assert budget_period("1d", NOW, eastern) == (utc(2026, 11, 25, 5), utc(2026, 11, 26, 5))
    # 2026-11-01 is the end of daylight saving time in New York: that day lasts 25 hours.
    start, end = budget_period("1d", utc(2026, 11, 1, 12), eastern)
    assert (start, end) == (utc(2026, 11, 1, 4), utc(2026, 11, 2, 5))


def test_unknown_timezone_is_refused() -> None:
    with pytest.raises(ValueError, match="IANA"):
        budget_timezone("Mars/Olympus")


def test_spend_of_an_ended_period_counts_as_nothing() -> None:
    state = SpendState(
        entity="key",
        entity_id="k",
        spend=Decimal("3"),
        period_start=utc(2026, 11, 25),
        budget_reset_at=utc(2026, 11, 26),
    )
    assert state.current_spend(utc(2026, 11, 25, 23, 59)) == Decimal("3")
    assert state.current_spend(utc(2026, 11, 26)) == Decimal("0")
    lifetime = SpendState(entity="key", entity_id="k", spend=Decimal("3"))
    assert lifetime.current_spend(utc(2099, 1, 1)) == Decimal("3")


def test_a_later_period_supersedes_a_larger_total_of_an_earlier_one() -> None:
    old = SpendState(
        entity="team", entity_id="t", spend=Decimal("9"), period_start=utc(2026, 11, 1)
    )
    new = SpendState(
        entity="team", entity_id="t", spend=Decimal("1"), period_start=utc(2026, 12, 1)
    )
    more = new.model_copy(update={"spend": Decimal("2")})
    assert new.supersedes(old)
    assert not old.supersedes(new)
    assert more.supersedes(new)
    assert not new.supersedes(more)
    assert not new.supersedes(new)
    lifetime = SpendState(entity="team", entity_id="t", spend=Decimal("5"))
    assert old.supersedes(lifetime)


def test_current_period_of_a_stored_duration() -> None:
    assert current_period("1d", NOW) == budget_period("1d", NOW)
    # No duration, or one only a hand edit could store: no period, never an error.
    assert current_period(None, NOW) is None
    assert current_period("", NOW) is None
    assert current_period("soon", NOW) is None
