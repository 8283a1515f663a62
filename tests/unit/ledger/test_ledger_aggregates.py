"""What a batch of new calls adds to sessions, daily_spend and spend_totals (aggregates.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from support.builders import completed, failed
from tollgate_ledger.aggregates import aggregate
from tollgate_ledger.policy import LedgerPolicy
from tollgate_ledger.rows import SpendRow, spend_row

T0 = datetime(2025, 3, 4, 23, 59, 59, tzinfo=UTC)


def row(**kw: object) -> SpendRow:
    fields: dict[str, object] = {
        "api_key_hash": "k1",
        "key_alias": "alias-1",
        "team_id": "t1",
        "team_alias": "Team 1",
        "user_id": "u1",
        "start_time": T0,
        "spend": Decimal("0.5"),
        "tags": ["a"],
        **kw,
    }
    return spend_row(completed(**fields), LedgerPolicy())


def test_sessions_sum_their_calls_from_first_start_to_last_end() -> None:
    late = T0 + timedelta(minutes=1)
    sums = aggregate(
        [
            row(session_id="s", start_time=late, end_time=late + timedelta(seconds=3)),
            row(session_id="s"),
            row(session_id=None),
            spend_row(failed(session_id="s", start_time=T0), LedgerPolicy()),
        ]
    )
    [sid], first, last, requests, ok, bad, spend, prompt, completion, total = sums.session_columns()
    assert sid == "s"
    assert (first, last) == ([T0], [late + timedelta(seconds=3)])
    assert (requests, ok, bad) == ([3], [2], [1])
    assert spend == [Decimal("1.0")]
    assert (prompt, completion, total) == ([20], [10], [30])  # the failure used none


def test_daily_rows_per_utc_day_and_dimension() -> None:
    sums = aggregate(
        [
            row(tags=["a", "a", "b"]),  # a tag listed twice counts twice
            row(start_time=T0 + timedelta(seconds=2), api_key_hash="", user_id=""),
            row(end_user="", model_group="m\x00"),
        ]
    )
    days, dims, ids, spend, *_, requests, successes, failures = sums.daily_columns()
    got = {
        (d, dim, i): (s, n)
        for d, dim, i, s, n in zip(days, dims, ids, spend, requests, strict=True)
    }
    today, tomorrow = date(2025, 3, 4), date(2025, 3, 5)
    assert got[(today, "tag", "a")] == (Decimal("1.5"), 3)
    assert got[(today, "tag", "b")] == (Decimal("0.5"), 1)
    assert got[(today, "key", "k1")] == (Decimal("1.0"), 2)
    assert (tomorrow, "key", "") not in got  # no key: no key row
    assert (tomorrow, "user", "") not in got
    assert got[(tomorrow, "team", "t1")] == (Decimal("0.5"), 1)
    assert got[(today, "end_user", "")] == (Decimal("0.5"), 1)  # empty, not absent
    assert got[(today, "model", "m")] == (Decimal("0.5"), 1)
    assert set(successes) == {1, 2, 3}
    assert set(failures) == {0}
    assert (keys := list(zip(days, dims, ids, strict=True))) == sorted(keys)


def test_totals_per_entity_with_the_batch_s_last_alias() -> None:
    sums = aggregate(
        [
            row(key_alias="old", end_user="c1"),
            row(key_alias="new", team_alias=None),
            row(key_alias=None, user_id=None),
        ]
    )
    entities, ids, spend, requests, tokens, aliases = sums.total_columns()
    got = {
        (e, i): (s, n, t, a)
        for e, i, s, n, t, a in zip(entities, ids, spend, requests, tokens, aliases, strict=True)
    }
    assert got[("key", "k1")] == (Decimal("1.5"), 3, 45, "new")
    assert got[("team", "t1")] == (Decimal("1.5"), 3, 45, "Team 1")
    assert got[("user", "u1")] == (Decimal("1.0"), 2, 30, None)
    assert got[("end_user", "c1")] == (Decimal("0.5"), 1, 15, None)
    assert list(zip(entities, ids, strict=True)) == sorted(got)


def test_nothing_new_adds_nothing() -> None:
    sums = aggregate([])
    assert (sums.sessions, sums.daily, sums.totals) == ({}, {}, {})
    assert all(col == [] for col in sums.total_columns())
