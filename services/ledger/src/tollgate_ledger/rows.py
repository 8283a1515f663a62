"""Pure ledger logic: decode events, map them to spend-log and audit rows, parse filters."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import orjson
from pydantic import Field, ValidationError, create_model

from tollgate_shared import durations
from tollgate_shared.config import ENV_PREFIX, TollgateConfig
from tollgate_shared.events import (
    AdminChanged,
    Event,
    LlmRequestCompleted,
    LlmRequestFailed,
    LlmRequestFinished,
    event_class_for_subject,
)
from tollgate_shared.state import hash_key

PRODUCER = "ledger"

# LiteLLM's table names in LiteLLM_AuditLog, by Tollgate admin entity.
AUDIT_TABLE_NAMES: dict[str, str] = {
    "key": "LiteLLM_VerificationToken",
    "team": "LiteLLM_TeamTable",
    "user": "LiteLLM_UserTable",
    "model": "LiteLLM_ProxyModelTable",
    "team_callback": "LiteLLM_TeamTable",
}

# Entities whose running spend total the ledger keeps (and mirrors to KV).
TOTAL_ENTITIES = ("key", "team", "user", "end_user")


class DecodeError(ValueError):
    """A message that can never become a ledger record (bad JSON, wrong schema or type)."""


@dataclass(frozen=True)
class LedgerPolicy:
    """What the config says the ledger stores."""

    store_prompts: bool = False
    disable_spend_logs: bool = False
    disable_error_logs: bool = False
    store_audit_logs: bool = False
    retention: timedelta | None = None
    retention_interval: timedelta = timedelta(days=1)

    @classmethod
    def from_config(cls, cfg: TollgateConfig) -> LedgerPolicy:
        gs = cfg.general_settings
        return cls(
            store_prompts=gs.store_prompts_in_spend_logs,
            disable_spend_logs=gs.disable_spend_logs,
            disable_error_logs=gs.disable_error_logs,
            store_audit_logs=cfg.litellm_settings.store_audit_logs,
            retention=parse_duration(gs.maximum_spend_logs_retention_period)
            if gs.maximum_spend_logs_retention_period
            else None,
            retention_interval=parse_duration(gs.maximum_spend_logs_retention_interval)
            if gs.maximum_spend_logs_retention_interval
            else timedelta(days=1),
        )

    def stores_log(self, status: str) -> bool:
        """Whether a call with this status gets a spend_logs row."""
        if self.disable_spend_logs:
            return False
        return not (status == "failure" and self.disable_error_logs)

    def needs_content(self, event: LlmRequestFinished) -> bool:
        """Whether an offloaded event's content must be fetched before writing it."""
        return bool(event.content_ref) and self.store_prompts and self.stores_log(event.status)  # type: ignore[attr-defined]


# --- decoding -------------------------------------------------------------------


# What `decode_finished(content=False)` reads: the same events with their content
# fields left unread. The JSON parser skips those values instead of building them as
# Python objects, which halves decoding; every field a spend row uses is validated as
# before. For a policy that stores no content (the default).
_UNREAD = "\x00unread"  # a validation alias no JSON key has


def _without_content(cls: type[LlmRequestFinished]) -> type[LlmRequestFinished]:
    unread: dict[str, Any] = {
        "messages": (Any, Field(None, validation_alias=_UNREAD)),
        "response": (Any, Field(None, validation_alias=_UNREAD)),
        "proxy_server_request": (dict[str, Any] | None, Field(None, validation_alias=_UNREAD)),
        "model_parameters": (
            dict[str, Any],
            Field(default_factory=dict, validation_alias=_UNREAD),
        ),
    }
    return create_model(f"{cls.__name__}WithoutContent", __base__=cls, **unread)


_WITHOUT_CONTENT: dict[type[Event], type[LlmRequestFinished]] = {
    cls: _without_content(cls) for cls in (LlmRequestCompleted, LlmRequestFailed)
}


def decode_finished(subject: str, data: bytes, *, content: bool = True) -> LlmRequestFinished:
    """The completed/failed event in a message, or DecodeError saying why not.

    With `content=False` its messages, response, proxy_server_request and
    model_parameters are not read (they come back empty): for rows without content.
    """
    try:
        cls = event_class_for_subject(subject)
    except LookupError as exc:
        raise DecodeError(str(exc)) from None
    if cls not in (LlmRequestCompleted, LlmRequestFailed):
        raise DecodeError(f"{subject} does not carry a completed or failed request")
    model = cls if content else _WITHOUT_CONTENT[cls]
    try:
        event = model.model_validate_json(data)
    except ValidationError as exc:
        raise DecodeError(_validation_summary(exc)) from None
    assert isinstance(event, LlmRequestFinished)
    return event


def decode_admin(subject: str, data: bytes) -> AdminChanged:
    try:
        cls = event_class_for_subject(subject)
    except LookupError as exc:
        raise DecodeError(str(exc)) from None
    if cls is not AdminChanged:
        raise DecodeError(f"{subject} does not carry an admin change")
    try:
        return AdminChanged.model_validate_json(data)
    except ValidationError as exc:
        raise DecodeError(_validation_summary(exc)) from None


def request_id_hint(data: bytes) -> str | None:
    """The request id of an undecodable message, when its JSON still names one."""
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    rid = raw.get("request_id") if isinstance(raw, dict) else None
    return rid if isinstance(rid, str) else None


def _validation_summary(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "(body)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


# --- spend rows -------------------------------------------------------------------

# Column order of the COPY into the batch's temporary table.
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
    # not stored in spend_logs: routing flags for the aggregate statement
    "store_log",
)


@dataclass(frozen=True)
class SpendRow:
    """One call as the ledger records it; `values` follow SPEND_COLUMNS."""

    request_id: str
    start_time: datetime
    event_id: str
    values: tuple[Any, ...]
    spend: Decimal
    key: str | None
    team_id: str | None
    user_id: str | None
    end_user: str | None
    store_log: bool
    aliases: Mapping[str, str | None] = field(default_factory=dict)


def _clean_text(value: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL; one stray byte must not sink a whole batch.
    return value.replace("\x00", "") if value else value


def _json(value: Any) -> str | None:
    if value is None:
        return None
    text = orjson.dumps(value, default=str).decode()
    # jsonb rejects \u0000 as well.
    return text.replace("\\u0000", "") if "\\u0000" in text else text


def _utc(value: datetime) -> datetime:
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
    start = _utc(event.start_time)
    end = _utc(event.end_time)
    completion_start = _utc(event.completion_start_time) if event.completion_start_time else end
    duration_ms = round(event.total_latency_ms)
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
        _clean_text(event.model_group or event.requested_model) or "",
        event.custom_llm_provider or "",
        event.api_base or "",
        event.user_id or "",
        _json(spend_log_metadata(event)),
        "True" if event.cache_hit else "False",
        _json(list(event.tags)),
        event.team_id,
        event.organization_id,
        _clean_text(event.end_user),
        event.requester_ip,
        _json(event.messages) if keep_content else None,
        _json(event.response) if keep_content else None,
        _json(event.proxy_server_request) if keep_content else None,
        _clean_text(event.session_id),
        status,
        event.event_id,
        _clean_text(event.key_alias),
        _clean_text(event.team_alias),
        event.cached_tokens,
        event.reasoning_tokens,
        event.stream,
        _clean_text(event.trace_id),
        event.region,
        failure.error_class if failure else None,
        _clean_text(failure.error_message) if failure else None,
        failure.error_code if failure else None,
        failure.status_code if failure else None,
        store_log,
    )
    return SpendRow(
        request_id=event.request_id,
        start_time=start,
        event_id=event.event_id,
        values=values,
        spend=event.spend,
        key=event.api_key_hash,
        team_id=event.team_id,
        user_id=event.user_id,
        end_user=event.end_user,
        store_log=store_log,
        aliases={"key": event.key_alias, "team": event.team_alias},
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
    return {r.start_time.astimezone(UTC).date() for r in rows}


# --- partitions and retention -------------------------------------------------------


def parse_duration(text: str) -> timedelta:
    """LiteLLM's duration strings: `30s`, `10m`, `12h`, `7d`, `2w`, `1mo`, `1y`."""
    return durations.parse_duration(text).timedelta()


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def partition_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=UTC)
    return start, start + timedelta(days=1)


_PARTITION_DAY = re.compile(r"_p(\d{8})$")


def partitions_to_drop(names: Iterable[str], now: datetime, retention: timedelta) -> list[str]:
    """Partitions whose whole day ended before `now - retention` (never a partial day)."""
    cutoff = now - retention
    out = []
    for name in names:
        m = _PARTITION_DAY.search(name)
        if not m:
            continue
        day = datetime.strptime(m.group(1), "%Y%m%d").replace(tzinfo=UTC).date()
        if partition_bounds(day)[1] <= cutoff:
            out.append(name)
    return sorted(out)


# --- audit -------------------------------------------------------------------------

_SECRET_NAME = re.compile(
    r"(api[_-]?key|secret|password|passwd|private[_-]?key|credential|auth[_-]?token|"
    r"access[_-]?token|bearer|webhook[_-]?url|dsn)",
    re.IGNORECASE,
)


def mask_secret(value: str) -> str:
    """Keep enough to recognise a value, never enough to use it."""
    if value.startswith(ENV_PREFIX):
        return value
    if len(value) <= 8:
        return "*" * len(value)
    return f"{value[:3]}...{value[-4:]}" if value.startswith("sk-") else f"****{value[-4:]}"


def mask_secrets(value: Any, key: str = "") -> Any:
    """A copy of `value` with every secret-looking field or plaintext key masked."""
    if isinstance(value, dict):
        return {k: mask_secrets(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v, key) for v in value]
    if isinstance(value, str):
        if key and _SECRET_NAME.search(key):
            return mask_secret(value)
        if value.startswith("sk-") and len(value) > 20:
            return mask_secret(value)
    return value


@dataclass(frozen=True)
class AuditRow:
    id: str
    updated_at: datetime
    changed_by: str | None
    changed_by_api_key: str | None
    action: str
    table_name: str
    object_id: str
    before_value: str | None
    updated_values: str | None


def audit_row(event: AdminChanged) -> AuditRow:
    return AuditRow(
        id=event.event_id,
        updated_at=_utc(event.occurred_at),
        changed_by=event.changed_by,
        changed_by_api_key=event.changed_by_api_key,
        action=event.action,
        table_name=AUDIT_TABLE_NAMES.get(event.entity, event.entity),
        object_id=event.object_id,
        before_value=_json(mask_secrets(event.before_value)),
        updated_values=_json(mask_secrets(event.updated_values)),
    )


def audit_table_filter(value: str) -> str:
    """`table_name` filter: LiteLLM's table name, or Tollgate's entity name (`key`, ...)."""
    return AUDIT_TABLE_NAMES.get(value, value)


# --- read filters ---------------------------------------------------------------------


class FilterError(ValueError):
    """A query parameter the read API cannot use; names the parameter."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d")


def parse_when(value: str | None, param: str, *, end_of_day: bool = False) -> datetime | None:
    """LiteLLM's date filters: `YYYY-MM-DD`, `YYYY-MM-DD HH:MM:SS`, or ISO 8601 (UTC if naive).

    A bare date used as an end bound covers that whole day.
    """
    if value is None or value == "":
        return None
    text = value.strip()
    parsed: datetime | None = None
    for fmt in _DATE_FORMATS:
        try:
            parsed = datetime.strptime(text, fmt)
        except ValueError:
            continue
        if fmt == "%Y-%m-%d" and end_of_day:
            parsed = parsed + timedelta(days=1) - timedelta(microseconds=1)
        break
    if parsed is None:
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise FilterError(
                param, f"{param} must be a date (YYYY-MM-DD or YYYY-MM-DD HH:MM:SS), got {value!r}"
            ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def key_filter(value: str | None) -> str | None:
    """`api_key` filter: a plaintext `sk-` key is hashed, a hash is used as given."""
    if not value:
        return None
    return hash_key(value) if value.startswith("sk-") else value


def total_pages(total: int, page_size: int) -> int:
    return -(-total // page_size) if page_size else 0
