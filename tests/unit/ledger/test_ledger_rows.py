"""The ledger's pure modules: decoding, rows, policy, audit rows, partitions, filters."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest

from support.builders import admin_change
from support.builders import completed as build_completed
from support.builders import failed as build_failed
from tollgate_ledger.audit import AUDIT_TABLE_NAMES, audit_row, audit_table_filter
from tollgate_ledger.decoding import ADMIN_CHANGE, FINISHED, request_id_hint
from tollgate_ledger.filters import FilterError, key_filter, parse_when
from tollgate_ledger.partitions import partition_name, partitions_to_drop
from tollgate_ledger.policy import LedgerPolicy, parse_duration
from tollgate_ledger.rows import SPEND_COLUMNS, dedupe, spend_row
from tollgate_shared import names
from tollgate_shared.config import parse_config
from tollgate_shared.events import (
    EventDecodeError,
    LlmRequestCompleted,
    LlmRequestFailed,
    LlmRequestFinished,
    UnknownEventVersionError,
    decode,
)
from tollgate_shared.names import AdminSubject
from tollgate_shared.redaction import MASKED, mask_secrets
from tollgate_shared.state import hash_key

T0 = datetime(2025, 3, 4, 23, 59, 59, tzinfo=UTC)


# The fields these tests assert on; everything else is the builders' default.
FIELDS: dict[str, object] = {
    "request_id": "req-1",
    "api_key_hash": "ab" * 32,
    "key_alias": "alias-1",
    "team_id": "team-1",
    "team_alias": "Team One",
    "user_id": "user-1",
    "end_user": "cust-1",
    "model": "gpt-4o-2024",
    "model_id": "dep-1",
    "api_base": "http://up",
    "start_time": T0,
    "end_time": T0 + timedelta(seconds=2),
    "total_latency_ms": 2000.4,
    "spend": Decimal("0.000123"),
    "session_id": "sess-1",
    "tags": ["a", "b"],
    "metadata": {"generation_name": "g", "spend_logs_metadata": {"x": 1}},
    "messages": [{"role": "user", "content": "hi"}],
    "response": {"choices": []},
    "proxy_server_request": {"body": {}},
}


def completed(**kw: object) -> LlmRequestCompleted:
    return build_completed(**{**FIELDS, **kw})


def failed(**kw: object) -> LlmRequestFailed:
    fields = {**FIELDS, "error_class": "RateLimitError", "error_message": "slow down"}
    return build_failed(**{**fields, "status_code": 429, "spend": Decimal(0), **kw})


def decode_finished(subject: str, data: bytes, *, content: bool = True) -> LlmRequestFinished:
    return decode(subject, data, FINISHED, content=content)


def col(row_values: tuple[object, ...], name: str) -> object:
    return row_values[SPEND_COLUMNS.index(name)]


def test_decode_finished_accepts_completed_and_failed() -> None:
    ev = completed()
    got = decode_finished(ev.subject(), ev.to_json())
    assert isinstance(got, LlmRequestCompleted)
    assert got.spend == Decimal("0.000123")
    f = failed()
    assert isinstance(decode_finished(f.subject(), f.to_json()), LlmRequestFailed)


@pytest.mark.parametrize(
    ("subject", "payload", "needle"),
    [
        (f"{names.LLM_REQUEST_COMPLETED}.t", b"{not json", "Invalid JSON"),
        (f"{names.LLM_REQUEST_COMPLETED}.t", b'{"producer": "x"}', "request_id"),
        (f"{names.LLM_REQUEST_STARTED}.t", completed().to_json(), "not what this consumer"),
        ("nothing.here", b"{}", "no event is published"),
        ("llm.request.completed.v2.t", completed().to_json(), "version v2"),
    ],
)
def test_decode_finished_rejects(subject: str, payload: bytes, needle: str) -> None:
    with pytest.raises(EventDecodeError, match=needle):
        decode_finished(subject, payload)


@pytest.mark.parametrize("make", [completed, failed])
def test_decode_without_content_reads_everything_a_row_needs(make: Any) -> None:
    ev = make()
    lean = decode_finished(ev.subject(), ev.to_json(), content=False)
    assert isinstance(lean, type(ev))
    assert lean.messages is None
    assert lean.response is None
    assert lean.proxy_server_request is None
    assert lean.model_parameters == {}
    full = decode_finished(ev.subject(), ev.to_json())
    policy = LedgerPolicy()
    assert spend_row(lean, policy) == spend_row(full, policy)
    with pytest.raises(EventDecodeError, match="request_id"):
        decode_finished(ev.subject(), b'{"producer": "x"}', content=False)


def test_an_unknown_version_is_refused_by_its_own_error() -> None:
    with pytest.raises(UnknownEventVersionError):
        decode_finished("llm.request.failed.v9._", failed().to_json())


def test_request_id_hint() -> None:
    assert request_id_hint(b'{"request_id": "r9", "bad": true}') == "r9"
    assert request_id_hint(b"garbage") is None
    assert request_id_hint(b"[1,2]") is None


def test_spend_row_maps_litellm_columns() -> None:
    row = spend_row(completed(), LedgerPolicy(store_prompts=True))
    v = row.values
    assert len(v) == len(SPEND_COLUMNS)
    assert col(v, "request_id") == "req-1"
    assert col(v, "api_key") == "ab" * 32
    assert col(v, "spend") == Decimal("0.000123")
    assert col(v, "user") == "user-1"
    assert col(v, "model") == "gpt-4o-2024"
    assert col(v, "model_group") == "gpt-4o"
    assert col(v, "request_duration_ms") == 2000
    assert col(v, "cache_hit") == "False"
    assert col(v, "status") == "success"
    # Non-streaming: completion start is the end time, as LiteLLM records it.
    assert col(v, "completionStartTime") == T0 + timedelta(seconds=2)
    assert orjson.loads(col(v, "request_tags")) == ["a", "b"]  # type: ignore[arg-type]
    meta = orjson.loads(col(v, "metadata"))  # type: ignore[arg-type]
    assert meta["user_api_key_alias"] == "alias-1"
    assert meta["user_api_key_team_id"] == "team-1"
    assert meta["spend_logs_metadata"] == {"x": 1}
    assert orjson.loads(col(v, "messages")) == [{"role": "user", "content": "hi"}]  # type: ignore[arg-type]
    assert row.store_log is True
    assert row.key == "ab" * 32


def test_spend_row_without_store_prompts_has_no_content() -> None:
    v = spend_row(completed(), LedgerPolicy(store_prompts=False)).values
    assert col(v, "messages") is None
    assert col(v, "response") is None
    assert col(v, "proxy_server_request") is None


def test_failure_row_carries_error_information() -> None:
    v = spend_row(failed(error_code="rate_limit"), LedgerPolicy()).values
    assert col(v, "status") == "failure"
    assert col(v, "error_class") == "RateLimitError"
    assert col(v, "status_code") == 429
    meta = orjson.loads(col(v, "metadata"))  # type: ignore[arg-type]
    assert meta["error_information"]["error_message"] == "slow down"
    assert meta["error_information"]["error_code"] == "rate_limit"


def test_policies_decide_which_rows_are_stored() -> None:
    ok, bad = completed(), failed()
    assert spend_row(ok, LedgerPolicy(disable_spend_logs=True)).store_log is False
    assert spend_row(bad, LedgerPolicy(disable_spend_logs=True)).store_log is False
    assert spend_row(ok, LedgerPolicy(disable_error_logs=True)).store_log is True
    assert spend_row(bad, LedgerPolicy(disable_error_logs=True)).store_log is False
    stored = spend_row(bad, LedgerPolicy(disable_error_logs=True, store_prompts=True))
    assert col(stored.values, "messages") is None


def test_needs_content_only_when_it_will_be_stored() -> None:
    ref = completed(messages=None, response=None, content_ref="obj-1")
    assert LedgerPolicy(store_prompts=True).needs_content(ref)
    assert not LedgerPolicy(store_prompts=False).needs_content(ref)
    assert not LedgerPolicy(store_prompts=True, disable_spend_logs=True).needs_content(ref)
    assert not LedgerPolicy(store_prompts=True).needs_content(completed())


def test_nul_characters_are_removed() -> None:
    row = spend_row(
        completed(
            end_user="a\x00b",
            messages=[{"role": "user", "content": "x\x00y"}],
            tags=["t\x001", "t2"],
        ),
        LedgerPolicy(store_prompts=True),
    )
    v = row.values
    assert col(v, "end_user") == "ab"
    assert "\\u0000" not in col(v, "messages")  # type: ignore[operator]
    assert orjson.loads(col(v, "request_tags")) == ["t1", "t2"]  # type: ignore[arg-type]
    assert (row.end_user, row.tags) == ("ab", ("t1", "t2"))  # what the aggregates count


def test_dedupe_keeps_first_per_request() -> None:
    rows = [spend_row(completed(request_id=r), LedgerPolicy()) for r in ("a", "b", "a")]
    assert [r.request_id for r in dedupe(rows)] == ["a", "b"]


def test_policy_from_config() -> None:
    cfg = parse_config(
        {
            "general_settings": {
                "store_prompts_in_spend_logs": True,
                "disable_error_logs": True,
                "maximum_spend_logs_retention_period": "7d",
            },
            "litellm_settings": {"store_audit_logs": True},
        }
    )
    p = LedgerPolicy.from_config(cfg)
    assert p.store_prompts
    assert p.disable_error_logs
    assert not p.disable_spend_logs
    assert p.store_audit_logs
    assert p.retention == timedelta(days=7)
    assert p.retention_interval == timedelta(days=1)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("10m", 600), ("12h", 43200), ("7d", 604800), ("2w", 1209600), ("1mo", 2592000)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "7", "d7", "7 days", "-1d"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_partitions_to_drop_keeps_partial_days() -> None:
    names_ = [partition_name("spend_logs", date(2025, 3, d)) for d in (1, 2, 3, 4)]
    now = datetime(2025, 3, 5, 12, tzinfo=UTC)
    # cutoff 2025-03-03 12:00: days 1 and 2 ended before it; day 3 did not.
    assert partitions_to_drop([*names_, "spend_logs_default"], now, timedelta(days=2)) == [
        "spend_logs_p20250301",
        "spend_logs_p20250302",
    ]


def test_audit_values_are_masked_by_the_shared_rule() -> None:
    ev = admin_change(
        AdminSubject.KEY_CREATED,
        updated_values={
            "token": "ab" * 32,
            "key_alias": "fine",
            "metadata": {
                "logging": [
                    {
                        "callback_vars": {
                            "langfuse_secret_key": "sk-lf-1234567890abcdef",
                            "langfuse_public_key": "os.environ/LF_PUBLIC",
                            "langfuse_host": "https://cloud",
                        }
                    }
                ]
            },
            "key": "sk-" + "x" * 30,
            "webhook_url": "https://hooks.slack.com/services/T0/B0/abcdefgh",
        },
    )
    masked = orjson.loads(audit_row(ev).updated_values or "null")
    assert masked == mask_secrets(ev.updated_values)
    assert masked["token"] == MASKED + "abab"
    assert masked["key_alias"] == "fine"
    cb = masked["metadata"]["logging"][0]["callback_vars"]
    assert cb["langfuse_secret_key"] == "sk-...cdef"
    assert cb["langfuse_public_key"] == "os.environ/LF_PUBLIC"
    assert cb["langfuse_host"] == "https://cloud"
    assert masked["key"] == "sk-...xxxx"
    assert masked["webhook_url"] == MASKED + "efgh"


def test_audit_row_maps_litellm_columns() -> None:
    ev = admin_change(
        AdminSubject.TEAM_UPDATED,
        object_id="t1",
        changed_by="krrish@berri.ai",
        changed_by_api_key="h" * 64,
        before_value={"max_budget": 0},
        updated_values={"max_budget": 2000},
    )
    row = audit_row(ev)
    assert row.id == ev.event_id
    assert row.table_name == "LiteLLM_TeamTable"
    assert row.action == "updated"
    assert orjson.loads(row.updated_values or "null") == {"max_budget": 2000}
    assert decode(ev.subject(), ev.to_json(), ADMIN_CHANGE) == ev
    with pytest.raises(EventDecodeError):
        decode(ev.subject(), b'{"entity": "key"}', ADMIN_CHANGE)


def test_audit_table_filter() -> None:
    assert audit_table_filter("key") == AUDIT_TABLE_NAMES["key"]
    assert audit_table_filter("LiteLLM_TeamTable") == "LiteLLM_TeamTable"


def test_parse_when_formats() -> None:
    assert parse_when("2025-01-02", "start_date") == datetime(2025, 1, 2, tzinfo=UTC)
    end = parse_when("2025-01-02", "end_date", end_of_day=True)
    assert end is not None
    assert end.date() == date(2025, 1, 2)
    assert end.hour == 23
    assert parse_when("2025-01-02 03:04:05", "x") == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_when("2025-01-02T03:04:05Z", "x") == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_when(None, "x") is None


def test_parse_when_names_the_field() -> None:
    with pytest.raises(FilterError) as info:
        parse_when("yesterday", "start_date")
    assert info.value.param == "start_date"
    assert "start_date" in info.value.message


def test_key_filter_hashes_plaintext() -> None:
    assert key_filter("sk-abc") == hash_key("sk-abc")
    assert key_filter("ab" * 32) == "ab" * 32
    assert key_filter(None) is None


def test_an_audit_value_beyond_64_bits_is_written_not_a_failed_batch() -> None:
    # Bad input an admin change can carry (the admin API fuzzer sent one): orjson refuses
    # integers beyond 64 bits, so the row falls back to the standard library's JSON, and a
    # NUL is still removed (jsonb refuses it).
    big = 2**70
    row = audit_row(admin_change(updated_values={"max_budget": big, "name": "x\x00y"}))
    assert row.updated_values is not None
    assert json.loads(row.updated_values) == {"max_budget": big, "name": "xy"}
