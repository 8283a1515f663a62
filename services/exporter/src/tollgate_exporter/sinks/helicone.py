"""Helicone sink: each call is posted to Helicone's logging API (not its proxy).

`POST {HELICONE_API_BASE}/custom/v1/log` (Helicone's manual-logger endpoint; default
base `https://api.worker.helicone.ai`) with `Authorization: Bearer <key>`, one call per
request as the API takes them: `providerRequest {url, json: {model, messages, ...},
meta: {Helicone-User-Id, Helicone-Session-Id, Helicone-Property-*}}`,
`providerResponse {json: <the OpenAI response or {"error": ...}>, status, headers}`,
`timing {startTime, endTime, timeToFirstToken}` (seconds + milliseconds).

Credentials: `helicone_api_key`, `helicone_api_base` (callback vars) else
`HELICONE_API_KEY`, `HELICONE_API_BASE`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tollgate_exporter.sinks._http_api import (
    HttpApi,
    end_user,
    endpoint,
    error_text,
    failed,
    key,
    prompt,
    response_body,
    ttft_ms,
)
from tollgate_exporter.sinks.base import ExportItem
from tollgate_shared.events import LlmRequestFailed

DEFAULT_BASE = "https://api.worker.helicone.ai"


def _stamp(dt: datetime) -> dict[str, int]:
    ts = dt.timestamp()
    return {"seconds": int(ts), "milliseconds": round((ts - int(ts)) * 1000)}


def log_body(item: ExportItem) -> dict[str, Any]:
    event = item.event
    meta: dict[str, str] = {}
    if end_user(event):
        meta["Helicone-User-Id"] = str(end_user(event))
    if event.session_id:
        meta["Helicone-Session-Id"] = event.session_id
    props = {
        "key_alias": event.key_alias,
        "team_id": event.team_id,
        "request_id": event.request_id,
        "cost": str(event.spend),
        "tags": ",".join(event.tags) or None,
    }
    for k, v in {**event.metadata, **props}.items():
        if v is not None and isinstance(v, str | int | float | bool):
            meta[f"Helicone-Property-{k}"] = str(v)
    request_json: dict[str, Any] = {
        "model": event.requested_model,
        "messages": prompt(item),
        **{k: v for k, v in event.model_parameters.items() if isinstance(v, int | float | str)},
    }
    if isinstance(event, LlmRequestFailed):
        response: Any = {"error": {"message": error_text(event), "type": event.error_class}}
        status = event.status_code
    else:
        response = response_body(item) or {}
        status = 200
    timing: dict[str, Any] = {
        "startTime": _stamp(event.start_time),
        "endTime": _stamp(event.end_time),
    }
    if ttft_ms(event) is not None:
        timing["timeToFirstToken"] = ttft_ms(event)
    return {
        "providerRequest": {
            "url": event.api_base or "custom-model-nopath",
            "json": request_json,
            "meta": meta,
        },
        "providerResponse": {
            "json": response,
            "status": status,
            "headers": {"x-tollgate-failed": "true"} if failed(item) else {},
        },
        "timing": timing,
    }


API = HttpApi(
    "helicone",
    {
        "key": key("helicone_api_key", "HELICONE_API_KEY"),
        "base": endpoint("helicone_api_base", "HELICONE_API_BASE", default=DEFAULT_BASE),
    },
    path="/custom/v1/log",
    payload=lambda item, _: log_body(item),
)
SINK = API.sink
