"""Unit tests of the alerter's pure rules and its configuration parsing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from support import builders
from tollgate_alerter import rules
from tollgate_alerter.policy import (
    ALL_ALERT_TYPES,
    DEFAULT_ALERT_TYPES,
    MANAGEMENT_ALERT_TYPES,
    AlertingArgs,
    parse_duration,
    policy_from_settings,
)
from tollgate_shared.config import ConfigError, parse_config
from tollgate_shared.events import (
    LlmRequestCompleted,
    LlmRequestFailed,
)
from tollgate_shared.names import AdminSubject, admin_subject
from tollgate_shared.redaction import MASKED
from tollgate_shared.vocabulary import AlertType

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def failed(**kw: Any) -> LlmRequestFailed:
    return builders.failed(
        **{
            "request_id": "req-1",
            "requested_model": "gpt",
            "model_group": "gpt",
            "model_id": "dep-1",
            "api_base": "https://user:pw@api.example.com/v1?key=secret",
            "key_alias": "prod",
            "team_id": "t1",
            "start_time": T0,
            "end_time": T0 + timedelta(seconds=1),
            "error_message": "boom",
            "status_code": 503,
            "upstream_status_code": 503,
            "messages": [{"role": "user", "content": "PRIVATE"}],
            **kw,
        }
    )


def completed(seconds: float, **kw: Any) -> LlmRequestCompleted:
    return builders.completed(
        **{
            "request_id": "req-2",
            "requested_model": "gpt",
            "model_group": None,
            "model": None,
            "model_id": "dep-1",
            "start_time": T0,
            "end_time": T0 + timedelta(seconds=seconds),
            "messages": [{"role": "user", "content": "PRIVATE"}],
            **kw,
        }
    )


def policy(**general: Any):
    return policy_from_settings(parse_config({"general_settings": general}).general_settings)


# --- configuration ----------------------------------------------------------------------
def test_defaults_follow_litellm() -> None:
    p = policy()
    assert p.threshold_s == 300
    assert p.alert_types == frozenset(DEFAULT_ALERT_TYPES)
    assert not p.alert_types & set(MANAGEMENT_ALERT_TYPES)
    assert p.args == AlertingArgs()
    assert (p.args.budget_alert_ttl, p.args.outage_alert_ttl) == (86400, 60)
    assert (p.args.minor_outage_alert_threshold, p.args.major_outage_alert_threshold) == (5, 10)
    assert p.args.daily_report_frequency == 43200
    assert p.args.report_check_interval == 3600
    assert p.args.max_outage_alert_list_size == 1000
    assert p.spend_report_every_s == 7 * 86400
    assert not p.slack_enabled


def test_alert_type_groups_cover_litellms_vocabulary_once() -> None:
    assert sorted(ALL_ALERT_TYPES) == sorted(AlertType)
    p = policy(alert_types=["llm_exceptions"], alert_to_webhook_url={"budget_alerts": "https://x"})
    assert p.alert_types == {AlertType.LLM_EXCEPTIONS}
    assert all(isinstance(t, AlertType) for t in (*p.alert_types, *p.webhook_urls))


def test_alert_to_webhook_url_takes_a_url_or_a_list_and_environment_references(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOOK_2", "https://hooks.example.com/2")
    p = policy(
        alerting=["slack"],
        alert_to_webhook_url={
            "llm_exceptions": ["https://hooks.example.com/1", "os.environ/HOOK_2"],
            "budget_alerts": "https://hooks.example.com/b",
        },
        spend_report_frequency="2d",
    )
    assert p.slack_urls("llm_exceptions", "https://default") == (
        "https://hooks.example.com/1",
        "https://hooks.example.com/2",
    )
    assert p.slack_urls("budget_alerts", None) == ("https://hooks.example.com/b",)
    assert p.slack_urls("llm_too_slow", "https://default") == ("https://default",)
    assert p.slack_urls("llm_too_slow", None) == ()
    assert p.spend_report_every_s == 2 * 86400


@pytest.mark.parametrize(
    ("general", "path"),
    [
        ({"alert_types": ["llm_exceptions", "nope"]}, "general_settings.alert_types[1]"),
        ({"alert_to_webhook_url": {"bogus": "https://x"}}, "alert_to_webhook_url.bogus"),
        ({"alert_to_webhook_url": {"llm_exceptions": ["ftp://x"]}}, "llm_exceptions[0]"),
        ({"alerting_args": {"outage_alert_ttl": -1}}, "alerting_args.outage_alert_ttl"),
        ({"spend_report_frequency": "soon"}, "general_settings.spend_report_frequency"),
        (
            {
                "alerting_args": {
                    "minor_outage_alert_threshold": 9,
                    "major_outage_alert_threshold": 3,
                }
            },
            "major_outage_alert_threshold",
        ),
    ],
)
def test_bad_values_fail_naming_the_key(general: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError, match=path.replace("[", r"\[").replace("]", r"\]")):
        policy(**general)


def test_durations() -> None:
    assert parse_duration("30s", "x") == 30
    assert parse_duration("1h", "x") == 3600
    assert parse_duration("7d", "x") == 7 * 86400
    assert parse_duration(12, "x") == 12
    with pytest.raises(ConfigError, match="x:"):
        parse_duration("0s", "x")


# --- LLM alerts ---------------------------------------------------------------------------
def test_exception_alert_carries_on_call_details_and_no_content() -> None:
    alert = rules.exception_alert(failed())
    assert alert is not None
    assert alert.level == "High"
    assert alert.dedup_key is not None
    for expected in ("dep-1", "gpt-4o", "prod", "t1", "req-1", "APIError: boom", "503"):
        assert expected in alert.message
    assert "https://api.example.com/v1" in alert.message
    assert "secret" not in alert.message
    assert "pw@" not in alert.message
    assert "PRIVATE" not in alert.message


def test_client_disconnects_and_proxy_refusals_are_not_llm_exceptions() -> None:
    assert rules.exception_alert(failed(status_code=499, upstream_status_code=None)) is None
    refusal = failed(model_id=None, upstream_status_code=None, status_code=401)
    assert rules.exception_alert(refusal) is None


@pytest.mark.parametrize(
    ("kw", "code"),
    [
        ({"status_code": 503, "upstream_status_code": 503}, 503),
        ({"status_code": 500, "upstream_status_code": 500}, 500),
        ({"status_code": 408, "upstream_status_code": 408}, 408),
        ({"status_code": 429, "upstream_status_code": 429}, None),
        ({"status_code": 400, "upstream_status_code": 400}, None),
        (
            {
                "status_code": 504,
                "upstream_status_code": None,
                "upstream_reachable": False,
                "error_class": "Timeout",
            },
            408,
        ),
        (
            {
                "status_code": 502,
                "upstream_status_code": None,
                "upstream_reachable": False,
                "error_class": "APIConnectionError",
            },
            502,
        ),
        ({"status_code": 499, "upstream_status_code": None}, None),
    ],
)
def test_only_timeouts_and_5xx_count_towards_outages(kw: dict[str, Any], code: int | None) -> None:
    assert rules.outage_code(failed(**kw)) == code


def test_outage_levels_and_message() -> None:
    args = AlertingArgs()
    assert rules.outage_levels(4, args) == []
    assert rules.outage_levels(5, args) == ["minor"]
    assert rules.outage_levels(12, args) == ["minor", "major"]
    alert = rules.outage_alert("Model", "gpt-4o", "major", [503] * 9 + [408], 60, failed())
    assert alert.level == "High"
    assert alert.dedup_key == "outage/model/dep-1/major"
    assert alert.dedup_ttl_s == 60
    assert "Major Service Outage" in alert.message
    assert "API Errors: 9" in alert.message
    assert "Timeout Errors: 1" in alert.message


def test_slow_alert_only_above_threshold() -> None:
    assert rules.slow_alert(completed(1.0), 1.0) is None
    alert = rules.slow_alert(completed(2.5), 1.0)
    assert alert is not None
    assert "Responses are slow - 2.5s response time > Alerting threshold: 1.0s" in alert.message
    assert "PRIVATE" not in alert.message


def test_hanging_is_measured_from_when_the_alerter_saw_the_start() -> None:
    assert rules.hanging_deadline(T0, T0, 5) == T0.timestamp() + 5
    late = T0 + timedelta(minutes=10)
    assert rules.hanging_deadline(T0, late, 5) == late.timestamp() + 5


def test_hanging_alert_from_record() -> None:
    started = completed(0)  # any request event carries what the record needs
    record = rules.hanging_record(started)
    assert "PRIVATE" not in record
    alert = rules.hanging_alert("req-2", record, T0 + timedelta(seconds=7), 5)
    assert alert.level == "Medium"
    assert "Requests are hanging - 5s+ request time" in alert.message
    assert "Running For:* `7.0s`" in alert.message
    assert alert.subject == "dep-1"


# --- formatting ------------------------------------------------------------------------------
def test_slack_text_layout_and_storm_count() -> None:
    alert = rules.exception_alert(failed())
    assert alert is not None
    one = rules.slack_text(alert, T0)
    assert one.startswith("Level: `High`\nTimestamp: `2025-01-01 12:00:00 UTC`\n\nMessage: ")
    many = rules.slack_text(alert, T0, count=3, request_ids=["a", "b", "c"])
    assert many.startswith("[Num Alerts: 3]\n\nLevel: `High`")
    assert "*Request IDs:* `a, b, c`" in many


# --- budgets --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spend", "level"),
    [
        ("50", None),
        ("84.99", None),
        ("85", "85"),
        ("94.9", "85"),
        ("95", "95"),
        ("100", "exceeded"),
    ],
)
def test_budget_levels(spend: str, level: str | None) -> None:
    assert rules.budget_level(Decimal(spend), Decimal(100)) == level


def test_budget_level_needs_a_budget() -> None:
    assert rules.budget_level(Decimal(1000), None) is None


def test_each_budget_period_may_cross_a_level_again() -> None:
    info = rules.EntityInfo()
    keys = set()
    for start in (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)):
        total = builders.spend_total(
            entity="team",
            entity_id="t1",
            spend=Decimal("100"),
            max_budget=Decimal(100),
            period_start=start,
            budget_reset_at=start + timedelta(days=30),
        )
        alert = rules.budget_alert(total, info, 86400)
        assert alert is not None
        assert "budget_reset_at" in alert.message
        keys.add(alert.dedup_key)
    assert len(keys) == 2


def test_budget_alert_webhook_event_has_litellm_shape() -> None:
    total = builders.spend_total(
        entity="key", entity_id="ab" * 32, spend=Decimal("96"), max_budget=Decimal(100)
    )
    info = rules.EntityInfo(key_alias="prod", team_id="t1", user_id="u1", user_email="u@x.io")
    alert = rules.budget_alert(total, info, 86400)
    assert alert is not None
    assert alert.dedup_key == f"budget/key/{'ab' * 32}/lifetime/95"
    assert alert.dedup_ttl_s == 86400
    assert alert.email_to == ("u@x.io",)
    event = alert.webhook_event
    assert event is not None
    assert event["event"] == "threshold_crossed"
    assert event["event_group"] == "key"
    assert event["token"] == "ab" * 32
    assert (event["spend"], event["max_budget"]) == (96.0, 100.0)
    assert event["key_alias"] == "prod"
    assert event["event_message"].startswith("Key Budget: 5% Threshold Crossed")
    assert "ab" * 32 not in alert.message  # the full hash is not shown in chat


def test_tag_and_model_totals_never_raise_budget_alerts() -> None:
    total = builders.spend_total(
        entity="tag", entity_id="x", spend=Decimal(5), max_budget=Decimal(1)
    )
    assert rules.budget_alert(total, rules.EntityInfo(), 60) is None


# --- management and router events --------------------------------------------------------------
@pytest.mark.parametrize(
    ("entity", "action", "alert_type"),
    [
        ("key", "created", "new_virtual_key_created"),
        ("key", "updated", "virtual_key_updated"),
        ("key", "rotated", "virtual_key_updated"),
        ("key", "deleted", "virtual_key_deleted"),
        ("team", "created", "new_team_created"),
        ("team", "member_added", "team_updated"),
        ("team", "deleted", "team_deleted"),
        ("user", "created", "new_internal_user_created"),
        ("user", "updated", "internal_user_updated"),
        ("user", "deleted", "internal_user_deleted"),
        ("model", "created", "new_model_added"),
        ("model", "deleted", None),
    ],
)
def test_management_types(entity: str, action: str, alert_type: str | None) -> None:
    event = builders.admin_change(AdminSubject(admin_subject(entity, action)), object_id="x")
    assert rules.management_type(event) == alert_type


def test_management_alert_redacts_secrets() -> None:
    event = builders.admin_change(
        AdminSubject.USER_CREATED,
        object_id="u1",
        changed_by="boss",
        updated_values={
            "user_email": "u@x.io",
            "password": "hunter2",
            "api_key": "sk-1",
            "metadata": {"note": "sk-" + "n" * 30, "langfuse_secret_key": "lf-secret"},
            "credentials": {"project": "p"},
        },
    )
    alert = rules.management_alert(event)
    assert alert is not None
    assert "hunter2" not in alert.message
    assert "sk-1" not in alert.message
    assert "n" * 30 not in alert.message  # a plaintext key is masked whatever its field
    assert "lf-secret" not in alert.message
    assert '"project"' not in alert.message  # an object under a secret name is masked whole
    # The shared format (tollgate_shared.redaction), as admin and the ledger show it.
    assert f"password: `{MASKED}`" in alert.message
    assert f"credentials: `{MASKED}`" in alert.message
    assert "sk-...nnnn" in alert.message
    assert "u@x.io" in alert.message
    assert alert.webhook_event is not None
    assert alert.webhook_event["event"] == "internal_user_created"
    assert alert.email_to == ("u@x.io",)


def test_cooldown_and_fallback() -> None:
    cooled = builders.deployment_changed(model_group="gpt", model_id="d1", cooldown_s=5)
    alert = rules.cooldown_alert(cooled)
    assert alert is not None
    assert "is in cooldown" in alert.message
    recovered = cooled.model_copy(update={"state": "recovered"})
    assert rules.cooldown_alert(recovered) is None
    fell = cooled.model_copy(update={"state": "fallback", "fallback_model_group": "backup"})
    assert rules.fallback_field(fell) == "gpt -> backup"


# --- reports ----------------------------------------------------------------------------------
def test_spend_report_sections_and_empty_period() -> None:
    end = T0 + timedelta(days=1)
    assert rules.spend_report({}, T0, end) is None
    report = rules.spend_report(
        {"team:Ops": Decimal("1.5"), "team:Dev": Decimal("3"), "tag:beta": Decimal("0.25")}, T0, end
    )
    assert report is not None
    lines = report.message.splitlines()
    teams = [line for line in lines if line.startswith("Team:")]
    assert teams == ["Team: `Dev` | Spend: `$3.0000`", "Team: `Ops` | Spend: `$1.5000`"]
    assert "Tag: `beta` | Spend: `$0.2500`" in lines
    assert "Key Spend Report" not in report.message


def test_daily_report_ranks_failures_and_latency_per_token() -> None:
    stats = [
        rules.DeploymentStats(f"d{i}", "http://x", failed=i, latency_s=10.0, output_tokens=i * 10)
        for i in range(1, 8)
    ]
    report = rules.daily_report(stats, T0, T0 + timedelta(hours=12), T0 + timedelta(hours=24))
    assert report is not None
    text = report.message
    assert text.index("`d7`") < text.index("`d6`")
    assert "`d1`, Failed" not in text  # only the top five
    assert "Latency per output token: `1.0s/token`" in text  # d1: 10 s over 10 tokens
    assert rules.daily_report([], T0, T0, T0) is None


def test_safe_api_base() -> None:
    assert rules.safe_api_base("https://u:p@h.io:8443/v1?k=s#f") == "https://h.io:8443/v1"
    assert rules.safe_api_base(None) is None


def test_record_is_json() -> None:
    assert json.loads(rules.hanging_record(completed(0)))["Request ID"] == "req-2"
