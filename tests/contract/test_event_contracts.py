"""Event contracts: snapshots, one stream per subject, consumer filters, round trips."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollgate_shared import names, schemas
from tollgate_shared.catalog import (
    CATALOG,
    entry_for,
    events_for_filter,
    pattern_within,
    patterns_overlap,
    subject_matches,
)
from tollgate_shared.events import (
    EVENT_TYPES,
    AdminChanged,
    AlertSent,
    DeploymentStateChanged,
    Event,
    ExportDeadLettered,
    LedgerDbError,
    LedgerSpendUpdated,
    LedgerTrackingFailed,
    LlmRequestCompleted,
    LlmRequestFailed,
    LlmRequestStarted,
    ServiceCrashLoop,
    SpendTotal,
    event_class_for_subject,
)

T0 = datetime(2025, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
T1 = T0 + timedelta(milliseconds=812)


def _llm(team_id: str | None) -> dict[str, object]:
    return {
        "producer": "ingress",
        "request_id": "chatcmpl-0123",
        "call_type": "acompletion",
        "requested_model": "demo",
        "model_group": "demo",
        "model": "gpt-4o-mini",
        "custom_llm_provider": "openai",
        "start_time": T0,
        "team_id": team_id,
        "session_id": "sess-1",
        "metadata": {"generation_name": "greeting", "tags": ["a"]},
        "tags": ["a", "b"],
    }


def _finished(team_id: str | None) -> dict[str, object]:
    return {
        **_llm(team_id),
        "end_time": T1,
        "completion_start_time": T0 + timedelta(milliseconds=120),
        "total_latency_ms": 812.0,
        "upstream_latency_ms": 800.5,
        "overhead_latency_ms": 11.5,
        "prompt_tokens": 12,
        "completion_tokens": 30,
        "total_tokens": 42,
        # More digits than a float holds: must survive as a string.
        "spend": Decimal("0.000123456789012345678901"),
        "messages": [{"role": "user", "content": "Hello"}],
        "response": {"choices": [{"message": {"role": "assistant", "content": "Hi"}}]},
    }


def samples() -> list[Event]:
    """Instances of every event class, covering each subject parameter."""
    out: list[Event] = []
    for team in (None, "team-a", "T_9"):
        out.append(LlmRequestStarted(**_llm(team)))  # type: ignore[arg-type]
        out.append(LlmRequestCompleted(**_finished(team), finish_reasons=["stop"]))  # type: ignore[arg-type]
        out.append(
            LlmRequestFailed(
                **_finished(team),  # type: ignore[arg-type]
                error_class="RateLimitError",
                error_message="upstream said 429",
                status_code=429,
                upstream_status_code=429,
            )
        )
    for state in ("cooled_down", "recovered", "fallback"):
        out.append(
            DeploymentStateChanged(
                producer="ingress", state=state, model_group="demo", cooldown_s=5.0
            )
        )
    for entity in ("key", "team", "user", "model"):
        out.append(
            AdminChanged(
                producer="admin",
                entity=entity,
                action="created",
                object_id="obj-1",
                changed_by="admin",
                updated_values={"max_budget": "10.5"},
            )
        )
    out.append(
        LedgerSpendUpdated(
            producer="ledger",
            totals=[
                SpendTotal(
                    entity="team",
                    entity_id="team-a",
                    spend=Decimal("12.340000000000000001"),
                    max_budget=Decimal("100"),
                )
            ],
        )
    )
    out.append(
        LedgerTrackingFailed(
            producer="ledger", subject_name="llm.request.completed.v1._", error="bad payload"
        )
    )
    out.append(LedgerDbError(producer="ledger", error="connection reset", batch_size=3))
    for condition in ("crash_loop", "recovered"):
        out.append(
            ServiceCrashLoop(
                producer="supervisor",
                condition=condition,
                service="exporter",
                loop_id="loop-1",
                host="gw-1",
                exits=5,
                window_s=120.0,
            )
        )
    for alert_type in ("budget_alerts", "llm_exceptions"):
        out.append(
            AlertSent(
                producer="alerter",
                alert_type=alert_type,
                level="High",
                message="budget crossed",
                destinations=["slack"],
            )
        )
    out.append(
        ExportDeadLettered(
            producer="exporter",
            source_event_id="0190c6d0-0000-7000-8000-000000000000",
            source_subject="llm.request.completed.v1.team-a",
            sink="langfuse",
            destination="langfuse https://cloud.langfuse.com pk-lf-1",
            attempts=8,
            error="503 Service Unavailable",
        )
    )
    return out


SAMPLES = samples()


def _id(event: Event) -> str:
    return event.subject()


def test_every_event_class_has_samples_and_a_catalog_entry() -> None:
    assert {type(s) for s in SAMPLES} == set(EVENT_TYPES)
    assert {e.event for e in CATALOG} == set(EVENT_TYPES)
    assert len({cls.event_type for cls in EVENT_TYPES}) == len(EVENT_TYPES)


# --- snapshots ----------------------------------------------------------------


@pytest.mark.parametrize("cls", EVENT_TYPES, ids=lambda c: c.event_type)
def test_schema_equals_its_snapshot(cls: type[Event]) -> None:
    path = schemas.snapshot_path(cls)
    assert path.exists(), f"no snapshot for {cls.event_type}: run ./just snapshot-schemas"
    current = schemas.event_schema(cls)
    if path.read_text() != schemas.render(current):
        broken = schemas.breaking_changes(json.loads(path.read_text()), current)
        pytest.fail(
            f"{cls.__name__} drifted from {path}: "
            + ("; ".join(broken) or "compatible change")
            + ". A compatible change (optional field added): ./just snapshot-schemas; "
            "anything else needs a new event version."
        )


def test_no_stray_snapshots() -> None:
    assert schemas.check() == []


def test_check_reports_missing_changed_and_stray_snapshots(tmp_path: Path) -> None:
    schemas.write(tmp_path)
    assert schemas.check(tmp_path) == []
    completed = schemas.snapshot_path(LlmRequestCompleted, tmp_path)
    old = json.loads(completed.read_text())
    del old["properties"]["spend"]
    completed.write_text(schemas.render(old))
    schemas.snapshot_path(LedgerDbError, tmp_path).unlink()
    (tmp_path / "llm.request.gone.v1.json").write_text("{}")

    drift = {d.event_type: d.detail for d in schemas.check(tmp_path)}

    # The model has a field the snapshot lacks: an optional addition, not breaking.
    assert drift[LlmRequestCompleted.event_type].startswith("compatible")
    assert drift[LedgerDbError.event_type] == "no snapshot"
    assert drift["llm.request.gone.v1"] == "snapshot of no event or state class"
    assert schemas.main(["check", "--dir", str(tmp_path)]) == 1


def test_breaking_changes_names_removed_required_and_changed_fields() -> None:
    old = {"properties": {"a": {"type": "string"}, "b": {"type": "integer"}}, "required": ["a"]}
    new = {
        "properties": {"a": {"type": "integer"}, "c": {"type": "string"}},
        "required": ["a", "c"],
    }
    assert schemas.breaking_changes(old, new) == [
        "field 'b' removed",
        "field 'a' changed",
        "field 'c' became required",
    ]
    added_optional = {
        "properties": {**old["properties"], "d": {"type": "string"}},
        "required": ["a"],
    }
    assert schemas.breaking_changes(old, added_optional) == []


# --- subjects, streams, consumers ----------------------------------------------


@pytest.mark.parametrize("event", SAMPLES, ids=_id)
def test_subject_is_stored_by_exactly_one_stream(event: Event) -> None:
    subject = event.subject()
    owners = [s.name for s in names.STREAMS if any(subject_matches(p, subject) for p in s.subjects)]
    assert len(owners) == 1, f"{subject} is stored by {owners}"


@pytest.mark.parametrize("event", SAMPLES, ids=_id)
def test_subject_follows_the_catalog_and_maps_back_to_its_class(event: Event) -> None:
    subject = event.subject()
    assert subject_matches(entry_for(type(event)).pattern, subject)
    assert event_class_for_subject(subject) is type(event)


def test_no_two_streams_overlap() -> None:
    patterns = [(s.name, p) for s in names.STREAMS for p in s.subjects]
    for i, (a_name, a) in enumerate(patterns):
        for b_name, b in patterns[i + 1 :]:
            assert not patterns_overlap(a, b), f"streams {a_name} and {b_name} overlap"


@pytest.mark.parametrize("spec", names.CONSUMERS, ids=lambda c: c.name)
def test_consumer_filters_fall_inside_its_stream(spec: names.ConsumerSpec) -> None:
    streams = {s.name: s for s in names.STREAMS}
    assert spec.stream in streams
    assert spec.filter_subjects
    for f in spec.filter_subjects:
        assert any(pattern_within(f, p) for p in streams[spec.stream].subjects), (
            f"{spec.name} filters {f}, outside stream {spec.stream}"
        )
        assert events_for_filter(f), f"{spec.name} filters {f}, which no event is published on"
    assert len(spec.backoff_s) <= spec.max_deliver


def test_consumer_names_are_unique_and_service_prefixed() -> None:
    assert len({c.name for c in names.CONSUMERS}) == len(names.CONSUMERS)
    services = {"ingress", "admin", "ledger", "exporter", "alerter"}
    for c in names.CONSUMERS:
        assert c.name.split("-", 1)[0] in services, c.name


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("llm.>", "llm.request.completed.v1._", True),
        ("llm.>", "llm", False),
        ("llm.request.*.v1.team-a", "llm.request.failed.v1.team-a", True),
        ("llm.request.*.v1.team-a", "llm.request.failed.v1.team-b", False),
        ("llm.request.completed.v1.*", "llm.request.completed.v1", False),
        ("ledger.db.error.v1", "ledger.db.error.v1", True),
        ("ledger.db.error.v1", "ledger.db.error.v1.x", False),
    ],
)
def test_subject_matching(pattern: str, subject: str, expected: bool) -> None:
    assert subject_matches(pattern, subject) is expected


@pytest.mark.parametrize(
    ("inner", "outer", "within", "overlap"),
    [
        ("llm.request.completed.v1.*", "llm.>", True, True),
        ("llm.>", "llm.request.completed.v1.*", False, True),
        ("admin.>", "admin.>", True, True),
        ("admin.*.created.v1", "admin.key.*.v1", False, True),
        ("ledger.>", "llm.>", False, False),
        ("llm.request.*.v1.team-a", "llm.request.completed.v1.*", False, True),
        ("llm.request.started.v1.*", "llm.request.completed.v1.*", False, False),
        ("a.b", "a.b.c", False, False),
    ],
)
def test_pattern_within_and_overlap(inner: str, outer: str, within: bool, overlap: bool) -> None:
    assert pattern_within(inner, outer) is within
    assert patterns_overlap(inner, outer) is overlap
    assert patterns_overlap(outer, inner) is overlap


# --- ids in subjects ------------------------------------------------------------


@pytest.mark.parametrize("bad", ["team.a", "*", ">", "team-*", "a>", "team a", "t\n", "x" * 129])
def test_ids_that_could_widen_a_subscription_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="must match"):
        names.subject_token(bad)
    event = LlmRequestStarted(**_llm(bad))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must match"):
        event.subject()


@given(
    st.tuples(st.text(max_size=20), st.sampled_from(list(".*> \t\n")), st.text(max_size=20)).map(
        "".join
    )
)
def test_no_id_with_separator_or_wildcard_becomes_a_token(bad: str) -> None:
    with pytest.raises(ValueError, match="must match"):
        names.subject_token(bad)


def test_missing_id_is_the_no_team_token() -> None:
    assert names.subject_token(None) == names.NO_TEAM
    assert names.subject_token("") == names.NO_TEAM


# --- wire format ------------------------------------------------------------------


@pytest.mark.parametrize("event", SAMPLES, ids=_id)
def test_round_trip_preserves_every_value(event: Event) -> None:
    back = type(event).from_json(event.to_json())
    assert back == event
    assert back.to_json() == event.to_json()


def test_money_travels_as_decimal_strings() -> None:
    completed = next(s for s in SAMPLES if isinstance(s, LlmRequestCompleted))
    wire = json.loads(completed.to_json())
    assert wire["spend"] == "0.000123456789012345678901"
    assert LlmRequestCompleted.from_json(completed.to_json()).spend == completed.spend

    updated = next(s for s in SAMPLES if isinstance(s, LedgerSpendUpdated))
    total = json.loads(updated.to_json())["totals"][0]
    assert total["spend"] == "12.340000000000000001"
    assert total["max_budget"] == "100"


@given(
    st.decimals(
        allow_nan=False, allow_infinity=False, min_value=Decimal("-1e6"), max_value=Decimal("1e6")
    )
)
def test_any_money_amount_round_trips_exactly(amount: Decimal) -> None:
    event = LlmRequestCompleted(**{**_finished("team-a"), "spend": amount})  # type: ignore[arg-type]
    wire = json.loads(event.to_json())
    assert isinstance(wire["spend"], str)
    assert Decimal(wire["spend"]) == amount
    assert LlmRequestCompleted.from_json(event.to_json()).spend == amount


@pytest.mark.parametrize("event", SAMPLES, ids=_id)
def test_unknown_fields_are_ignored(event: Event) -> None:
    wire = json.loads(event.to_json())
    wire["field_added_by_a_newer_producer"] = {"nested": [1, 2, 3]}
    assert type(event).from_json(json.dumps(wire)) == event


def test_missing_required_field_is_rejected() -> None:
    wire = json.loads(SAMPLES[1].to_json())
    del wire["request_id"]
    with pytest.raises(ValueError, match="request_id"):
        LlmRequestCompleted.from_json(json.dumps(wire))
