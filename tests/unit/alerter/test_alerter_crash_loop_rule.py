"""Unit tests of Tollgate's own `service_crash_loop` rule and its place in the policy."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tollgate_alerter import rules
from tollgate_alerter.policy import DEFAULT_ALERT_TYPES, policy_from_settings
from tollgate_alerter.rules.formatting import slack_text
from tollgate_shared.config import parse_config
from tollgate_shared.events import ServiceCrashLoop
from tollgate_shared.vocabulary import AlertType

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def loop_event(**kw: Any) -> ServiceCrashLoop:
    values: dict[str, Any] = {
        "producer": "supervisor",
        "condition": "crash_loop",
        "service": "exporter",
        "loop_id": "loop-1",
        "host": "gw-1",
        "exits": 5,
        "window_s": 120.0,
        "restarts": 4,
        "last_exit_code": 1,
        "retry_in_s": 16.0,
        "log_file": "/srv/tollgate/.data/logs/exporter.log",
        "occurred_at": T0,
        **kw,
    }
    return ServiceCrashLoop(**values)


def test_a_crash_loop_is_a_high_alert_naming_service_host_exits_and_log() -> None:
    alert = rules.crash_loop_alert(loop_event())
    assert alert.alert_type is AlertType.SERVICE_CRASH_LOOP
    assert alert.level == "High"
    assert alert.subject == "gw-1/exporter"
    text = slack_text(alert, T0)
    for piece in (
        "Crash loop: the service `exporter` exited 5 times within 120s on `gw-1`",
        "next try in 16s",
        "*Last Exit Code:* `1`",
        "*Log:* `/srv/tollgate/.data/logs/exporter.log`",
    ):
        assert piece in text, text
    # Urgent: sent at once, not held or folded in the anti-storm window.
    assert alert.squash is False


def test_recovery_is_low_and_each_condition_is_claimed_once_per_service_per_loop() -> None:
    began = rules.crash_loop_alert(loop_event())
    again = rules.crash_loop_alert(loop_event(event_id="another-copy", exits=6))
    over = rules.crash_loop_alert(
        loop_event(condition="recovered", exits=0, retry_in_s=None, kind="server")
    )
    later = rules.crash_loop_alert(loop_event(loop_id="loop-2"))
    other = rules.crash_loop_alert(loop_event(service="ledger"))
    assert over.level == "Low"
    assert "Recovered: the server `exporter` is running again on `gw-1`" in over.message
    # A re-announced or redelivered event of the same loop has the same claim...
    assert began.dedup_key == again.dedup_key
    # ...while the loop's end, a later loop and another service each have their own.
    keys = {began.dedup_key, over.dedup_key, later.dedup_key, other.dedup_key}
    assert len(keys) == 4
    assert began.dedup_ttl_s == rules.CRASH_LOOP_CLAIM_TTL_S


def test_service_crash_loop_is_tollgates_own_type_on_by_default_and_routable() -> None:
    assert AlertType.SERVICE_CRASH_LOOP in DEFAULT_ALERT_TYPES
    assert policy_from_settings(parse_config({}, "t").general_settings).enabled(
        AlertType.SERVICE_CRASH_LOOP
    )
    cfg = parse_config(
        {
            "general_settings": {
                "alerting": ["slack"],
                "alert_types": ["service_crash_loop"],
                "alert_to_webhook_url": {"service_crash_loop": "https://hooks.example/ops"},
            }
        },
        "t",
    )
    policy = policy_from_settings(cfg.general_settings)
    assert policy.alert_types == frozenset({AlertType.SERVICE_CRASH_LOOP})
    assert policy.slack_urls(AlertType.SERVICE_CRASH_LOOP, "https://default") == (
        "https://hooks.example/ops",
    )
