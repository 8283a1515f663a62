"""What the storage, queue, search and database sinks share: one record per call, where it
is filed (date and team), settings read LiteLLM's way, and cloud client errors mapped to
the retry decision.

The record is LiteLLM's standard logging payload (what its S3/GCS/SQS loggers store) plus
flat columns a query engine filters on without unnesting: `event_id`, `spend` (a decimal
string; `response_cost` stays LiteLLM's float), `key_alias`, `team_id`, `team_alias`,
`user_id`, `date`. Content (`messages`, `response`) is there only when it may leave:
items arrive redacted when they must (`content.redact`) and `content_redacted` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
from azure.core.exceptions import HttpResponseError, ServiceRequestError
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from tollgate_exporter.destinations import pick
from tollgate_exporter.sinks.base import ExportItem, PermanentError, RetryableError
from tollgate_exporter.sinks.datadog import standard_payload
from tollgate_shared.events import LlmRequestFinished

RETRY_STATUS = frozenset({408, 425, 429})


def utc(dt: datetime) -> datetime:
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC)


def day(event: LlmRequestFinished) -> str:
    """The call's UTC date (`YYYY-MM-DD`), the first partition of every object key."""
    return utc(event.start_time).strftime("%Y-%m-%d")


def team_of(event: LlmRequestFinished) -> str:
    """The team partition: the team id, `_` for none (ids are `[A-Za-z0-9_-]`)."""
    return event.team_id or "_"


def record(item: ExportItem) -> dict[str, Any]:
    """One call as stored: LiteLLM's standard logging payload plus flat query columns."""
    e = item.event
    out = standard_payload(item)
    out.update(
        {
            "event_id": e.event_id,
            "event_type": e.event_type,
            "date": day(e),
            "spend": str(e.spend),
            "key_alias": e.key_alias,
            "key_hash": e.api_key_hash,
            "team_id": e.team_id,
            "team_alias": e.team_alias,
            "user_id": e.user_id,
            "start_time": utc(e.start_time).isoformat(),
            "end_time": utc(e.end_time).isoformat(),
        }
    )
    return out


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return utc(value).isoformat()
    return str(value)


def dumps(doc: Any) -> str:
    return json.dumps(doc, default=_default, separators=(",", ":"))


def object_key(prefix: str | None, item: ExportItem, suffix: str = ".json") -> str:
    """`<prefix>/date=YYYY-MM-DD/team=<team>/<event id>.json`: Hive-style partitions, so
    Athena, BigQuery external tables and DuckDB (`hive_partitioning`) prune by date and team;
    the event id makes a redelivery overwrite the same object."""
    e = item.event
    parts = [p for p in ((prefix or "").strip("/"),) if p]
    parts += [f"date={day(e)}", f"team={team_of(e)}", f"{e.event_id}{suffix}"]
    return "/".join(parts)


class Settings:
    """LiteLLM-style settings: a callback variable (any of `var_names`) wins, else the
    environment (any of `env_names`)."""

    def __init__(self, vars_: Mapping[str, Any], env: Mapping[str, str]) -> None:
        self._vars = vars_
        self._env = env

    def get(self, var_names: tuple[str, ...], env_names: tuple[str, ...] = ()) -> str | None:
        found = pick(self._vars, *var_names)
        if found:
            return found
        return next((self._env[n] for n in env_names if self._env.get(n)), None)

    def flag(self, var_names: tuple[str, ...], env_names: tuple[str, ...] = ()) -> bool:
        raw = self.get(var_names, env_names)
        return raw is not None and raw.strip().lower() in ("true", "1", "yes")


def aws_settings(s: Settings, prefix: str) -> dict[str, str | None]:
    """Region, endpoint and credentials of an AWS client, LiteLLM's `<prefix>_*` names
    first (`s3_region_name`, `s3_aws_access_key_id`, …), then the standard AWS variables."""
    return {
        "region_name": s.get(
            (f"{prefix}_region_name", "aws_region_name"),
            ("AWS_REGION_NAME", "AWS_REGION", "AWS_DEFAULT_REGION"),
        )
        or "us-east-1",
        "endpoint_url": s.get(
            (f"{prefix}_endpoint_url", "aws_endpoint_url"),
            (f"AWS_ENDPOINT_URL_{prefix.upper()}", "AWS_ENDPOINT_URL"),
        ),
        "aws_access_key_id": s.get(
            (f"{prefix}_aws_access_key_id", "aws_access_key_id"), ("AWS_ACCESS_KEY_ID",)
        ),
        "aws_secret_access_key": s.get(
            (f"{prefix}_aws_secret_access_key", "aws_secret_access_key"),
            ("AWS_SECRET_ACCESS_KEY",),
        ),
        "aws_session_token": s.get(
            (f"{prefix}_aws_session_token", "aws_session_token"), ("AWS_SESSION_TOKEN",)
        ),
    }


def status_error(
    what: str, status: int, detail: str, retry_after: float | None = None
) -> Exception:
    """An HTTP status from a cloud API as the retry decision."""
    message = f"{what} answered {status}: {detail[:300]}"
    if status in RETRY_STATUS or status >= 500:
        return RetryableError(message, status, retry_after)
    return PermanentError(message, status)


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    raw = {k.lower(): v for k, v in headers.items()}.get("retry-after")
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


@contextlib.asynccontextmanager
async def mapped_errors(what: str) -> AsyncIterator[None]:
    """Cloud client exceptions (botocore, aiohttp, azure-core) as Retryable/PermanentError."""
    try:
        yield
    except ClientError as exc:
        meta = exc.response.get("ResponseMetadata", {})
        status = int(meta.get("HTTPStatusCode") or 400)
        error = exc.response.get("Error", {})
        detail = f"{error.get('Code')}: {error.get('Message')}"
        raise status_error(what, status, detail, _retry_after(meta.get("HTTPHeaders"))) from exc
    except (EndpointConnectionError, BotoCoreError) as exc:
        raise RetryableError(f"{what} unreachable: {type(exc).__name__}: {exc}") from exc
    except aiohttp.ClientResponseError as exc:
        raise status_error(what, exc.status, exc.message, _retry_after(exc.headers)) from exc
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise RetryableError(f"{what} unreachable: {type(exc).__name__}: {exc}") from exc
    except HttpResponseError as exc:
        status = exc.status_code or 500
        headers = getattr(exc.response, "headers", None)
        raise status_error(what, status, str(exc.message), _retry_after(headers)) from exc
    except ServiceRequestError as exc:
        raise RetryableError(f"{what} unreachable: {exc}") from exc


class SentMemory:
    """What a sink already delivered, so a retried batch does not send it twice (queues and
    inserts that would otherwise duplicate)."""

    def __init__(self, size: int = 20_000) -> None:
        self._size = size
        self._marks: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, mark: object) -> bool:
        return mark in self._marks

    def add(self, mark: str) -> None:
        self._marks[mark] = None
        while len(self._marks) > self._size:
            self._marks.popitem(last=False)


async def bounded(calls: Sequence[Callable[[], Awaitable[Any]]], limit: int = 16) -> list[Any]:
    """Run `calls` concurrently, at most `limit` at once; the first failure is raised."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await call()

    return list(await asyncio.gather(*(one(c) for c in calls)))
