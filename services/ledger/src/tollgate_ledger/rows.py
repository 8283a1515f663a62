"""Spend rows: a completed or failed call as the ledger records it (LiteLLM's spend-log columns)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

import orjson

from tollgate_ledger.policy import LedgerPolicy
from tollgate_shared.events import LlmRequestFailed, LlmRequestFinished

# The spend_logs columns a row fills, in the order of `SpendRow.values` (the COPY's).
SPEND_COLUMNS: tuple[str, ...] = (
    "request_id",
    "call_type",
    "api_key",
    "spend",
    "total_tokens",
    "prompt_tokens",
    "completion_tokens",
    "startTime",
    "endTime",
    "completionStartTime",
    "request_duration_ms",
    "model",
    "model_id",
    "model_group",
    "custom_llm_provider",
    "api_base",
    "user",
    "metadata",
    "cache_hit",
    "request_tags",
    "team_id",
    "organization_id",
    "end_user",
    "requester_ip_address",
    "messages",
    "response",
    "proxy_server_request",
    "session_id",
    "status",
    "event_id",
    "key_alias",
    "team_alias",
    "cached_tokens",
    "reasoning_tokens",
    "stream",
    "trace_id",
    "region",
    "error_class",
    "error_message",
    "error_code",
    "status_code",
)


class SpendRow(NamedTuple):
    """One call as the ledger records it: its spend_logs row (`values`, following
    SPEND_COLUMNS, written when `store_log`) and what its aggregates are summed from, as
    stored (NUL bytes removed; an empty key, user or model group is None). A named tuple:
    a batch builds hundreds of them on the consumer's one core."""

    request_id: str
    start_time: datetime
    day: date  # of the start, in UTC: its partition and its daily_spend rows
    end_time: datetime
    event_id: str
    values: tuple[Any, ...]
    store_log: bool
    status: str
    spend: Decimal
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    key: str | None
    key_alias: str | None
    team_id: str | None
    team_alias: str | None
    user_id: str | None
    end_user: str | None
    model_group: str | None
    session_id: str | None
    tags: tuple[str, ...]


def _clean_text(value: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL; one stray byte must not sink a whole batch.
    return value.replace("\x00", "") if value else value


def json_text(value: Any) -> str | None:
    if value is None:
        return None
    try:
        text = orjson.dumps(value, default=str).decode()
    except TypeError:
        # orjson refuses integers beyond 64 bits (an admin change may carry one); JSON and
        # jsonb hold them, so the standard library writes this value instead of the whole
        # batch failing on it.
        text = json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))
    # jsonb rejects \u0000 as well.
    return text.replace("\\u0000", "") if "\\u0000" in text else text


def utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def spend_log_metadata(event: LlmRequestFinished) -> dict[str, Any]:
    """LiteLLM's spend-log `metadata` shape (SpendLogsMetadata) for one call."""
    meta: dict[str, Any] = {
        "user_api_key": event.api_key_hash,
        "user_api_key_alias": event.key_alias,
        "user_api_key_team_id": event.team_id,
        "user_api_key_team_alias": event.team_alias,
        "user_api_key_user_id": event.user_id,
        "user_api_key_user_email": event.user_email,
        "user_api_key_org_id": event.organization_id,
        "user_api_key_end_user_id": event.end_user,
        "requester_ip_address": event.requester_ip,
        "spend_logs_metadata": event.metadata.get("spend_logs_metadata"),
        "requester_metadata": event.metadata or None,
        "status": event.status,  # type: ignore[attr-defined]
        "trace_id": event.trace_id,
        "usage_object": {
            "prompt_tokens": event.prompt_tokens,
            "completion_tokens": event.completion_tokens,
            "total_tokens": event.total_tokens,
            "prompt_tokens_details": {"cached_tokens": event.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": event.reasoning_tokens},
        },
        "additional_usage_values": {
            "upstream_latency_ms": event.upstream_latency_ms,
            "overhead_latency_ms": event.overhead_latency_ms,
        },
    }
    if event.warnings:
        meta["warnings"] = event.warnings
    if isinstance(event, LlmRequestFailed):
        meta["error_information"] = {
            "error_code": event.error_code or str(event.status_code),
            "error_class": event.error_class,
            "llm_provider": event.custom_llm_provider or "",
            "error_message": event.error_message,
        }
    return meta


def spend_row(event: LlmRequestFinished, policy: LedgerPolicy) -> SpendRow:
    """Map one completed/failed event to its spend-log row (content only when stored)."""
    status: str = event.status  # type: ignore[attr-defined]
    failure = event if isinstance(event, LlmRequestFailed) else None
    store_log = policy.stores_log(status)
    keep_content = store_log and policy.store_prompts
    start = utc(event.start_time)
    end = utc(event.end_time)
    completion_start = utc(event.completion_start_time) if event.completion_start_time else end
    duration_ms = round(event.total_latency_ms)
    model_group = _clean_text(event.model_group or event.requested_model) or ""
    end_user = _clean_text(event.end_user)
    session_id = _clean_text(event.session_id)
    key_alias = _clean_text(event.key_alias)
    team_alias = _clean_text(event.team_alias)
    tags = tuple(event.tags)
    tags_json = json_text(tags)
    if tags_json and any("\x00" in t for t in tags):
        tags = tuple(orjson.loads(tags_json))  # as jsonb stores them: without the NULs
    values = (
        event.request_id,
        event.call_type,
        event.api_key_hash or "",
        event.spend,
        event.total_tokens,
        event.prompt_tokens,
        event.completion_tokens,
        start,
        end,
        completion_start,
        duration_ms,
        _clean_text(event.model or event.requested_model) or "",
        event.model_id or "",
        model_group,
        event.custom_llm_provider or "",
        event.api_base or "",
        event.user_id or "",
        json_text(spend_log_metadata(event)),
        "True" if event.cache_hit else "False",
        tags_json,
        event.team_id,
        event.organization_id,
        end_user,
        event.requester_ip,
        json_text(event.messages) if keep_content else None,
        json_text(event.response) if keep_content else None,
        json_text(event.proxy_server_request) if keep_content else None,
        session_id,
        status,
        event.event_id,
        key_alias,
        team_alias,
        event.cached_tokens,
        event.reasoning_tokens,
        event.stream,
        _clean_text(event.trace_id),
        event.region,
        failure.error_class if failure else None,
        _clean_text(failure.error_message) if failure else None,
        failure.error_code if failure else None,
        failure.status_code if failure else None,
    )
    return SpendRow(
        request_id=event.request_id,
        start_time=start,
        day=start.astimezone(UTC).date(),
        end_time=end,
        event_id=event.event_id,
        values=values,
        store_log=store_log,
        status=status,
        spend=event.spend,
        prompt_tokens=event.prompt_tokens,
        completion_tokens=event.completion_tokens,
        total_tokens=event.total_tokens,
        key=event.api_key_hash or None,
        key_alias=key_alias,
        team_id=event.team_id,
        team_alias=team_alias,
        user_id=event.user_id or None,
        end_user=end_user,
        model_group=model_group or None,
        session_id=session_id,
        tags=tags,
    )


def dedupe(rows: Iterable[SpendRow]) -> list[SpendRow]:
    """One row per request id (the first seen): a batch may carry a duplicate."""
    seen: set[str] = set()
    out: list[SpendRow] = []
    for r in rows:
        if r.request_id not in seen:
            seen.add(r.request_id)
            out.append(r)
    return out


def days_of(rows: Iterable[SpendRow]) -> set[date]:
    return {r.day for r in rows}
