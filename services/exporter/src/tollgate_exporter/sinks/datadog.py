"""`datadog`: Datadog Logs (HTTP intake v2), one log per call, as LiteLLM's datadog logger
sends it: `ddsource`, `ddtags`, `hostname`, `service`, `status` and the call's standard
logging payload as the JSON `message` (model, tokens, cost, latency, key, team, session,
trace, tags, metadata; messages and response only when content may leave).

`POST https://http-intake.logs.{DD_SITE}/api/v2/logs` (or the Agent's
`http://{DD_AGENT_HOST}:{DD_AGENT_PORT}/api/v2/logs`), `DD-API-KEY` header, a JSON array of
at most 1000 logs and 5 MB per request (a batch is split to fit).

Settings (LiteLLM's): `DD_API_KEY`, `DD_SITE` (default `datadoghq.com`), `DD_AGENT_HOST`,
`DD_AGENT_PORT` (default 10518), `DD_SOURCE` (default `litellm`), `DD_SERVICE` (default
`litellm-server`), `DD_ENV`, `DD_VERSION`, `HOSTNAME`; callback variables of the same names
in lower case.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx

from tollgate_exporter.content import output_message, standard_metadata, user_metadata
from tollgate_exporter.destinations import Destination, digest, safe_url
from tollgate_exporter.sinks.base import BatchResult, ExportItem, SinkContext, SinkType, post
from tollgate_exporter.sinks.otel import VendorSettings
from tollgate_shared.events import LlmRequestCompleted, LlmRequestFailed

MAX_LOGS = 1000
MAX_BYTES = 4_500_000  # Datadog takes 5 MB per request; stay below it


def _iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def standard_payload(item: ExportItem) -> dict[str, Any]:
    """LiteLLM's StandardLoggingPayload for one call (what its HTTP loggers send)."""
    e = item.event
    failed = isinstance(e, LlmRequestFailed)
    meta = {**user_metadata(e), **standard_metadata(e)}
    payload: dict[str, Any] = {
        "id": e.request_id,
        "trace_id": e.trace_id or e.request_id,
        "call_type": e.call_type,
        "status": "failure" if failed else "success",
        "model": e.requested_model,
        "model_group": e.model_group,
        "model_id": e.model_id,
        "custom_llm_provider": e.custom_llm_provider,
        "api_base": e.api_base,
        "response_cost": float(e.spend),
        "prompt_tokens": e.prompt_tokens,
        "completion_tokens": e.completion_tokens,
        "total_tokens": e.total_tokens,
        "startTime": e.start_time.timestamp(),
        "endTime": e.end_time.timestamp(),
        "completionStartTime": (
            e.completion_start_time.timestamp() if e.completion_start_time else None
        ),
        "response_time": (e.end_time - e.start_time).total_seconds(),
        "cache_hit": e.cache_hit,
        "end_user": e.end_user or "",
        "session_id": e.session_id,
        "request_tags": list(e.tags),
        "metadata": meta,
        "model_parameters": e.model_parameters,
        "messages": e.messages,
        "response": (output_message(e) if isinstance(e, LlmRequestCompleted) else None),
        "content_redacted": item.redacted,
    }
    if isinstance(e, LlmRequestFailed):
        payload["error_str"] = f"{e.error_class}: {e.error_message}"
        payload["error_information"] = {
            "error_class": e.error_class,
            "error_message": e.error_message,
            "error_code": str(e.status_code),
        }
    return payload


def destination(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    v = VendorSettings(vars_, env, ("DD_SITE", "DD_AGENT_HOST"))
    api_key = v.secret("DD_API_KEY")
    agent = v.get("DD_AGENT_HOST")
    if agent:
        url = f"http://{agent}:{v.get('DD_AGENT_PORT') or 10518}/api/v2/logs"
    else:
        url = f"https://http-intake.logs.{v.get('DD_SITE') or 'datadoghq.com'}/api/v2/logs"
    if not api_key and not agent:
        return "datadog needs dd_api_key (DD_API_KEY)"
    options = {
        "url": url,
        "api_key": api_key,
        "source": v.get("DD_SOURCE") or "litellm",
        "service": v.get("DD_SERVICE") or "litellm-server",
        "hostname": v.get("HOSTNAME") or socket.gethostname(),
        "tags": {"env": v.get("DD_ENV") or "unknown", "version": v.get("DD_VERSION")},
    }
    return Destination(
        "datadog",
        f"datadog:{digest(options)}",
        f"datadog {safe_url(url)}",
        options,
    )


def log_entry(item: ExportItem, opts: Mapping[str, Any]) -> dict[str, Any]:
    e = item.event
    tags = {**opts["tags"], "service": opts["service"]}
    if e.team_id:
        tags["team"] = e.team_id
    if e.key_alias:
        tags["key_alias"] = e.key_alias
    ddtags = ",".join(f"{k}:{v}" for k, v in tags.items() if v)
    for tag in e.tags:
        ddtags += f",{tag}"
    return {
        "ddsource": opts["source"],
        "ddtags": ddtags,
        "hostname": opts["hostname"],
        "service": opts["service"],
        "status": "error" if isinstance(e, LlmRequestFailed) else "info",
        "timestamp": int(e.end_time.timestamp() * 1000),
        "message": json.dumps(standard_payload(item), default=_default),
    }


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    return str(value)


def chunks(entries: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    out: list[list[dict[str, Any]]] = [[]]
    size = 0
    for entry in entries:
        n = len(json.dumps(entry))
        if out[-1] and (len(out[-1]) >= MAX_LOGS or size + n > MAX_BYTES):
            out.append([])
            size = 0
        out[-1].append(entry)
        size += n
    return out


class DatadogSink:
    kind = "datadog"

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def send(self, destination: Destination, items: Sequence[ExportItem]) -> BatchResult:
        opts = destination.options
        headers = {"content-type": "application/json"}
        if opts["api_key"]:
            headers["DD-API-KEY"] = opts["api_key"]
        for chunk in chunks([log_entry(i, opts) for i in items]):
            await post(self._client, opts["url"], "datadog logs", json=chunk, headers=headers)
        return BatchResult()

    async def close(self) -> None:
        """Nothing of its own to release (the HTTP client is shared)."""


def create(ctx: SinkContext) -> DatadogSink:
    return DatadogSink(ctx.client)


SINK = SinkType(kind="datadog", names=("datadog",), destination=destination, create=create)
