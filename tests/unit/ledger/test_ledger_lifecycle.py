"""Retention settings and the idempotency window, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tollgate_ledger.partitions import partitions_to_drop, retention_check_s
from tollgate_ledger.policy import IDEMPOTENCY_MARGIN, LedgerPolicy
from tollgate_shared.config import ConfigError, parse_config


@pytest.mark.parametrize(
    "key",
    [
        "maximum_spend_logs_retention_period",
        "maximum_spend_logs_retention_interval",
        "maximum_session_logs_retention_period",
        "maximum_daily_spend_retention_period",
        "maximum_audit_logs_retention_period",
    ],
)
def test_a_bad_duration_fails_at_start_with_its_path(key: str) -> None:
    with pytest.raises(ConfigError, match=rf"general_settings\.{key}: .*not a duration"):
        parse_config({"general_settings": {key: "thirty days"}})


def test_any_interval_is_kept_as_given() -> None:
    cfg = parse_config({"general_settings": {"maximum_spend_logs_retention_interval": "1w"}})
    assert LedgerPolicy.from_config(cfg).retention_interval == timedelta(weeks=1)
    # A cleanup is asked for at most every minute; the run record spaces them, not this.
    assert retention_check_s(timedelta(weeks=1)) == 60.0
    assert retention_check_s(timedelta(seconds=5)) == 1.0


def test_idempotency_record_outlives_short_retention() -> None:
    policy = LedgerPolicy(retention=timedelta(days=1)).for_stream_age(3 * 86400)
    assert policy.idempotency_retention == timedelta(days=3) + IDEMPOTENCY_MARGIN
    # A retention longer than the window wins; an unlimited stream keeps every id.
    assert LedgerPolicy(retention=timedelta(days=90)).idempotency_retention == timedelta(days=90)
    unlimited = LedgerPolicy(retention=timedelta(days=1)).for_stream_age(0)
    assert unlimited.idempotency_retention is not None
    assert unlimited.idempotency_retention > timedelta(days=365 * 50)


def test_only_whole_days_past_the_period_are_dropped() -> None:
    now = datetime(2025, 6, 10, 0, 30, tzinfo=UTC)
    names = ["spend_logs_p20250608", "spend_logs_p20250609", "spend_logs_p20250610"]
    # An hour's retention: yesterday ended 30 minutes ago, so it stays.
    assert partitions_to_drop(names, now, timedelta(hours=1)) == ["spend_logs_p20250608"]
    assert partitions_to_drop(names, now, timedelta(minutes=10)) == names[:2]
