"""Langfuse sink: each call becomes a trace and a generation, mapped as LiteLLM maps them.

Ingestion path: Langfuse's batch ingestion API (`POST {host}/api/public/ingestion`,
basic auth `public_key:secret_key`, `trace-create` + `generation-create` events),
posted with the exporter's one shared httpx client. Why this path and not the
OTLP endpoint (`/api/public/otel/v1/traces`) or the `langfuse` package's client:

- LiteLLM's documented flow lets the caller choose the trace id
  (`metadata.trace_id`, any string) and join existing traces
  (`existing_trace_id`); the ingestion API keeps such ids as they are, while
  OTLP trace ids must be 32 hex digits.
- Redelivery is safe: every envelope id and observation id is derived from the
  event id, and Langfuse de-duplicates on the envelope id and upserts on the
  body id.
- Many projects from one process: the Python SDK (v3+) keeps one client and one
  OpenTelemetry pipeline per public key, with background threads each; here a
  destination is just (host, public key, secret key) and a queue, batched and
  retried by the exporter's own per-destination workers, so a slow project
  never blocks another. The SDK (v5) no longer ships a client for this API, so
  the documented JSON is built here.

Callback name: `langfuse` (`langfuse_otel` is Langfuse's OTLP endpoint: its own preset of
the OTLP sink, `sinks/langfuse_otel.py`). Destination: host,
public key and secret key from the callback variables (`langfuse_public_key`,
`langfuse_secret_key`/`langfuse_secret`, `langfuse_host`), else `LANGFUSE_*` in
the environment.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from tollgate_exporter.content import (
    REDACTED,
    output_message,
    standard_metadata,
    user_metadata,
)
from tollgate_exporter.destinations import Destination, digest, pick, safe_url
from tollgate_exporter.sinks.base import (
    BatchResult,
    ExportItem,
    RetryableError,
    SinkContext,
    SinkType,
    post,
    stable_id,
)
from tollgate_shared.events import LlmRequestFailed, LlmRequestFinished

DEFAULT_HOST = "https://cloud.langfuse.com"
INGESTION_PATH = "/api/public/ingestion"
# Langfuse limits a batch to 3.5 MB; stay below it.
MAX_BATCH_BYTES = 3_000_000
# Metadata keys LiteLLM pops off before logging the rest as metadata.
_CONTROL_KEYS = (
    "generation_name",
    "generation_id",
    "trace_id",
    "trace_name",
    "existing_trace_id",
    "update_trace_keys",
    "session_id",
    "tags",
    "debug_langfuse",
    "mask_input",
    "mask_output",
    "parent_observation_id",
    "version",
)
# `trace_<x>` metadata keys that name a field of the trace body.
_TRACE_FIELDS = {
    "user_id": "userId",
    "session_id": "sessionId",
    "name": "name",
    "version": "version",
    "release": "release",
    "metadata": "metadata",
    "tags": "tags",
    "public": "public",
    "input": "input",
    "output": "output",
    "environment": "environment",
}


def _origin(host: str) -> str:
    host = host.rstrip("/")
    return host if host.startswith(("http://", "https://")) else f"https://{host}"


def destination(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    """A Langfuse project: host, public key and secret key (the vars', else the environment's).

    The environment's keys are the global project's: they are only ever sent to the
    global host, so a callback that overrides the host alone gets no credentials.
    """
    global_host = _origin(env.get("LANGFUSE_HOST") or env.get("LANGFUSE_BASE_URL") or DEFAULT_HOST)
    own_host = pick(vars_, "langfuse_host")
    host = _origin(own_host) if own_host else global_host
    fallback = env if host == global_host else {}
    public = pick(vars_, "langfuse_public_key") or fallback.get("LANGFUSE_PUBLIC_KEY")
    secret = pick(vars_, "langfuse_secret_key", "langfuse_secret") or fallback.get(
        "LANGFUSE_SECRET_KEY"
    )
    if not public or not secret:
        if host != global_host:
            return (
                f"langfuse host {safe_url(host)} needs its own langfuse_public_key and "
                "langfuse_secret_key (the global keys are only sent to the global host)"
            )
        return "langfuse needs langfuse_public_key and langfuse_secret_key"
    return Destination(
        "langfuse",
        f"langfuse:{digest(host, public, secret)}",
        f"langfuse {safe_url(host)} {public}",
        {"host": host, "public_key": public, "secret_key": secret},
    )


def iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def default_tags(
    event: LlmRequestFinished, default_tag_keys: Sequence[str], proxy_base_url: str | None
) -> list[str]:
    """`litellm_settings.langfuse_default_tags`, rendered as LiteLLM renders them."""
    meta = {**standard_metadata(event), **user_metadata(event)}
    tags: list[str] = []
    for key in default_tag_keys:
        if key == "cache_hit":
            tags.append(f"cache_hit:{event.cache_hit}")
        elif key == "cache_key":
            hidden = meta.get("hidden_params")
            cache_key = hidden.get("cache_key") if isinstance(hidden, dict) else None
            tags.append(f"cache_key:{cache_key}")
        elif key == "proxy_base_url":
            if proxy_base_url:
                tags.append(f"proxy_base_url:{proxy_base_url}")
        elif meta.get(key) is not None:
            tags.append(f"{key}:{meta[key]}")
    return tags


def _scalar_params(params: dict[str, Any]) -> dict[str, Any]:
    """Langfuse takes str, int, float and bool model parameters; others become strings."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        if v is None:
            continue
        out[k] = v if isinstance(v, str | int | float | bool) else json.dumps(v, default=str)
    return out


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(p.title() for p in rest)


def render(
    item: ExportItem, default_tag_keys: Sequence[str] = (), proxy_base_url: str | None = None
) -> list[dict[str, Any]]:
    """The ingestion events (trace-create, generation-create) for one call."""
    event = item.event
    failed = isinstance(event, LlmRequestFailed)
    meta = user_metadata(event)
    clean: dict[str, Any] = {k: v for k, v in meta.items() if k not in _CONTROL_KEYS}

    tags = list(
        dict.fromkeys([*event.tags, *default_tags(event, default_tag_keys, proxy_base_url)])
    )
    prompt: Any = {"messages": event.messages}
    for extra in ("tools", "functions"):
        if event.model_parameters.get(extra) is not None:
            prompt[extra] = event.model_parameters[extra]
    status_message = (
        f"{event.error_class}: {event.error_message}"
        if isinstance(event, LlmRequestFailed)
        else None
    )
    redacted = item.redacted
    mask_input = redacted or bool(meta.get("mask_input"))
    mask_output = redacted or bool(meta.get("mask_output"))
    input_: Any = REDACTED if mask_input else prompt
    output: Any = None if failed else (REDACTED if mask_output else output_message(event))

    trace_id = str(meta.get("trace_id") or event.trace_id or event.request_id)
    existing = meta.get("existing_trace_id")
    trace_keys = {k: v for k, v in clean.items() if k.startswith("trace_")}
    for k in trace_keys:
        clean.pop(k)
    trace: dict[str, Any]
    if existing:
        trace_id = str(existing)
        trace = {"id": trace_id}
        for key in meta.get("update_trace_keys") or []:
            field = str(key).removeprefix("trace_")
            if field == "input":
                trace["input"] = input_
            elif field == "output":
                trace["output"] = output
            elif key in trace_keys:
                trace[_TRACE_FIELDS.get(field, _camel(field))] = trace_keys[key]
    else:
        trace = {
            "id": trace_id,
            "timestamp": iso(event.start_time),
            "name": meta.get("trace_name") or f"litellm-{event.call_type}",
            "sessionId": meta.get("session_id") or event.session_id,
            "userId": event.end_user,
            "input": input_,
            "version": meta.get("trace_version", meta.get("version")),
            "tags": tags,
        }
        if not failed:
            trace["output"] = output
        extra_meta: dict[str, Any] = {}
        for key, value in trace_keys.items():
            field = key.removeprefix("trace_")
            if field in _TRACE_FIELDS:
                trace[_TRACE_FIELDS[field]] = value
            else:
                extra_meta[field] = value
        if extra_meta:
            base = trace.get("metadata")
            trace["metadata"] = {**(base if isinstance(base, dict) else {}), **extra_meta}

    gen_meta = {
        **clean,
        **standard_metadata(event),
        "litellm_response_cost": float(event.spend),
        "litellm_call_id": event.request_id,
    }
    key_alias = event.key_alias
    generation: dict[str, Any] = {
        "id": str(meta.get("generation_id") or stable_id(event.event_id, "generation")),
        "traceId": trace_id,
        "name": meta.get("generation_name")
        or (f"litellm:{key_alias}" if key_alias else f"litellm-{event.call_type}"),
        "startTime": iso(event.start_time),
        "endTime": iso(event.end_time),
        "completionStartTime": iso(event.completion_start_time),
        "model": event.model or event.requested_model,
        "modelParameters": _scalar_params(
            {k: v for k, v in event.model_parameters.items() if k not in ("tools", "functions")}
        ),
        "input": input_,
        "output": output,
        "usage": {
            "input": event.prompt_tokens,
            "output": event.completion_tokens,
            "total": event.total_tokens,
            "unit": "TOKENS",
        },
        "usageDetails": {
            "input": event.prompt_tokens,
            "output": event.completion_tokens,
            "total": event.total_tokens,
            "cache_read_input_tokens": event.cached_tokens,
        },
        "costDetails": {"total": float(event.spend)},
        "metadata": gen_meta,
        "level": "ERROR" if failed else "DEFAULT",
        "statusMessage": status_message,
        "version": meta.get("version"),
        "parentObservationId": meta.get("parent_observation_id"),
    }
    stamp = iso(event.occurred_at)
    return [
        {
            "id": stable_id(event.event_id, "trace-create"),
            "type": "trace-create",
            "timestamp": stamp,
            "body": _compact(trace),
        },
        {
            "id": stable_id(event.event_id, "generation-create"),
            "type": "generation-create",
            "timestamp": stamp,
            "body": _compact(generation),
        },
    ]


def _compact(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


class LangfuseSink:
    kind = "langfuse"

    def __init__(
        self,
        client: httpx.AsyncClient,
        default_tag_keys: Sequence[str] = (),
        proxy_base_url: str | None = None,
    ) -> None:
        self._client = client
        self._default_tags = tuple(default_tag_keys)
        self._proxy_base_url = proxy_base_url

    def _chunks(
        self, items: Sequence[ExportItem]
    ) -> list[tuple[list[dict[str, Any]], dict[str, int]]]:
        """Ingestion batches under the size limit, with envelope id -> item index."""
        chunks: list[tuple[list[dict[str, Any]], dict[str, int]]] = []
        batch: list[dict[str, Any]] = []
        owners: dict[str, int] = {}
        size = 0
        for index, item in enumerate(items):
            events = render(item, self._default_tags, self._proxy_base_url)
            n = len(json.dumps(events, default=str))
            if batch and size + n > MAX_BATCH_BYTES:
                chunks.append((batch, owners))
                batch, owners, size = [], {}, 0
            batch.extend(events)
            owners.update({e["id"]: index for e in events})
            size += n
        if batch:
            chunks.append((batch, owners))
        return chunks

    async def send(self, destination: Destination, items: Sequence[ExportItem]) -> BatchResult:
        opts = destination.options
        url = f"{opts['host']}{INGESTION_PATH}"
        result = BatchResult()
        for batch, owners in self._chunks(items):
            body = json.dumps(
                {"batch": batch, "metadata": {"sdk_integration": "tollgate"}}, default=str
            ).encode()
            response = await post(
                self._client,
                url,
                "langfuse",
                content=body,
                auth=(opts["public_key"], opts["secret_key"]),
                headers={"content-type": "application/json"},
            )
            # 207: per-event outcomes. Server-side errors are retried (the envelope ids
            # make the resend idempotent); input errors reject just their item.
            try:
                errors = response.json().get("errors") or []
            except (ValueError, AttributeError):
                errors = []
            if any(int(e.get("status", 500)) >= 500 or e.get("status") == 429 for e in errors):
                raise RetryableError(
                    f"langfuse could not store part of a batch: {errors[:3]}", response.status_code
                )
            for e in errors:
                index = owners.get(str(e.get("id")))
                if index is not None:
                    result.rejected[index] = (
                        f"langfuse rejected {e.get('id')}: {e.get('status')} "
                        f"{e.get('message') or e.get('error')}"
                    )
        return result

    async def close(self) -> None:
        """Nothing of its own to release (the HTTP client is shared)."""


def create(ctx: SinkContext) -> LangfuseSink:
    return LangfuseSink(
        ctx.client,
        ctx.litellm.langfuse_default_tags,
        ctx.env.get("PROXY_BASE_URL") or ctx.settings.public_url,
    )


SINK = SinkType(
    kind="langfuse",
    names=("langfuse",),
    destination=destination,
    create=create,
)
