"""`sentry`: failed calls as Sentry error events, sent as envelopes to the project's
envelope endpoint (`POST {scheme}://{host}/api/{project_id}/envelope/`, `X-Sentry-Auth`
from the DSN's public key). Successful calls are not Sentry events: they are accepted
and dropped, as LiteLLM's `sentry` callback only reports failures.

Each event carries the error (`exception.values[0]`: type and message, `level: error`),
tags (model, model group, provider, team, key alias, status code), the request context
(`contexts.llm_request`: request id, model, tokens, cost, latency, session, trace, call
type; `contexts.trace.trace_id` from the call's traceparent), the end user as `user`,
and the prompt as `extra.messages` only when content may leave (never when redacted).

Settings (LiteLLM's): `SENTRY_DSN`, `SENTRY_ENVIRONMENT` (default `production`); callback
variables `sentry_dsn`, `sentry_environment`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from tollgate_exporter.content import standard_metadata
from tollgate_exporter.destinations import Destination, digest
from tollgate_exporter.sinks.base import (
    BatchResult,
    ExportItem,
    PermanentError,
    SinkContext,
    SinkType,
    post,
    stable_id,
)
from tollgate_exporter.sinks.otel import VendorSettings, span_ids
from tollgate_shared.events import LlmRequestFailed

CLIENT = "tollgate-exporter/1"


def destination(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    v = VendorSettings(vars_, env, ())
    dsn = v.get("SENTRY_DSN")
    if not dsn:
        return "sentry needs sentry_dsn (SENTRY_DSN)"
    parts = urlsplit(dsn)
    project = parts.path.strip("/").rsplit("/", 1)[-1]
    if parts.scheme not in ("http", "https") or not parts.username or not project:
        return "sentry_dsn must look like https://<public key>@<host>/<project id>"
    prefix = parts.path.strip("/").rsplit("/", 1)[0] if "/" in parts.path.strip("/") else ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    base = f"{parts.scheme}://{host}" + (f"/{prefix}" if prefix else "")
    options = {
        "url": f"{base}/api/{project}/envelope/",
        "dsn": dsn,
        "public_key": parts.username,
        "environment": v.get("SENTRY_ENVIRONMENT") or "production",
    }
    return Destination(
        "sentry",
        f"sentry:{digest(dsn, options['environment'])}",
        f"sentry {base} project {project}",
        options,
    )


def sentry_event(item: ExportItem, environment: str) -> dict[str, Any]:
    e = item.event
    assert isinstance(e, LlmRequestFailed)
    trace_id, span_id, _ = span_ids(e)
    latency_ms = (e.end_time - e.start_time).total_seconds() * 1000
    tags = {
        "model": e.requested_model,
        "model_group": e.model_group,
        "llm_provider": e.custom_llm_provider,
        "team_id": e.team_id,
        "key_alias": e.key_alias,
        "status_code": str(e.status_code),
        "call_type": e.call_type,
    }
    event: dict[str, Any] = {
        "event_id": uuid.UUID(stable_id(e.event_id, "sentry")).hex,
        "timestamp": e.end_time.timestamp(),
        "platform": "python",
        "level": "error",
        "logger": "tollgate.exporter",
        "environment": environment,
        "release": None,
        "message": {"formatted": f"{e.error_class}: {e.error_message}"[:8000]},
        "exception": {
            "values": [
                {
                    "type": e.error_class or "LLMError",
                    "value": e.error_message[:8000],
                    "mechanism": {"type": "tollgate", "handled": True},
                }
            ]
        },
        "tags": {k: v for k, v in tags.items() if v},
        "contexts": {
            "trace": {"trace_id": f"{trace_id:032x}", "span_id": f"{span_id:016x}"},
            "llm_request": {
                "request_id": e.request_id,
                "model": e.requested_model,
                "prompt_tokens": e.prompt_tokens,
                "completion_tokens": e.completion_tokens,
                "total_tokens": e.total_tokens,
                "response_cost": float(e.spend),
                "latency_ms": round(latency_ms, 3),
                "session_id": e.session_id,
                "trace_id": e.trace_id,
                "request_tags": list(e.tags),
                "upstream_status_code": e.upstream_status_code,
            },
        },
        "extra": {"metadata": standard_metadata(e), "content_redacted": item.redacted},
    }
    if e.end_user or e.user_id:
        event["user"] = {"id": e.end_user or e.user_id}
    if not item.redacted and e.messages is not None:
        event["extra"]["messages"] = e.messages
    return event


def envelope(item: ExportItem, opts: Mapping[str, Any], now: datetime) -> bytes:
    event = sentry_event(item, opts["environment"])
    payload = json.dumps(event, default=str).encode()
    header = {"event_id": event["event_id"], "dsn": opts["dsn"], "sent_at": now.isoformat()}
    item_header = {"type": "event", "length": len(payload), "content_type": "application/json"}
    return b"\n".join([json.dumps(header).encode(), json.dumps(item_header).encode(), payload])


class SentrySink:
    kind = "sentry"

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def send(self, destination: Destination, items: Sequence[ExportItem]) -> BatchResult:
        opts = destination.options
        auth = f"Sentry sentry_version=7, sentry_client={CLIENT}, sentry_key={opts['public_key']}"
        result = BatchResult()
        sent = 0
        for index, item in enumerate(items):
            if not isinstance(item.event, LlmRequestFailed):
                continue  # a success is not an error event
            body = envelope(item, opts, datetime.now(UTC))
            try:
                await post(
                    self._client,
                    opts["url"],
                    "sentry",
                    content=body,
                    headers={
                        "content-type": "application/x-sentry-envelope",
                        "x-sentry-auth": auth,
                    },
                )
            except PermanentError as exc:
                # One envelope per event: a malformed one is dead-lettered alone, with
                # Sentry's answer; a refusal of the first (bad DSN) refuses the batch.
                if not sent:
                    raise
                result.rejected[index] = str(exc)
            sent += 1
        return result

    async def close(self) -> None:
        """Nothing of its own to release (the HTTP client is shared)."""


def create(ctx: SinkContext) -> SentrySink:
    return SentrySink(ctx.client)


SINK = SinkType(kind="sentry", names=("sentry",), destination=destination, create=create)
