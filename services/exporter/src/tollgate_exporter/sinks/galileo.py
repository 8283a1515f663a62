"""Galileo sink: each call is an `llm` span (hosted API) or an Observe record (enterprise login).

As LiteLLM's Galileo integration: with `GALILEO_API_KEY`, batches go to
`POST {GALILEO_BASE_URL}/v2/projects/{GALILEO_PROJECT_ID}/spans` (header
`Galileo-API-Key`, default base `https://api.galileo.ai`) as `{"spans": [...],
"reliable": false, "log_stream_id"}`; a span: `type: "llm"`, `name` (call type),
`created_at`, `input` (messages), `output` (the assistant message), `status_code`,
`model`, `tags`, `metrics: {duration_ns, num_input_tokens, num_output_tokens}`,
`user_metadata` (cost, key alias, team, session, request id as strings). With
`GALILEO_USERNAME`/`GALILEO_PASSWORD` instead, a token is fetched from `POST /login`
(form) once per destination and records go to `/projects/{id}/observe/ingest` as
`{"records": [...]}` (`latency_ms`, `status_code`, `input_text`, `output_text`,
`node_type`, `model`, `num_input_tokens`, `num_output_tokens`, `created_at`, `tags`,
`user_metadata`). Failed calls carry their status code and the error as output.

Credentials: `galileo_api_key`, `galileo_base_url`, `galileo_project_id`,
`galileo_log_stream_id`, `galileo_username`, `galileo_password` (callback vars) else the
`GALILEO_*` variables of the same names.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tollgate_exporter.content import REDACTED
from tollgate_exporter.destinations import Destination
from tollgate_exporter.sinks._http_api import (
    ALL,
    HttpApi,
    Options,
    Part,
    RenderContext,
    Setting,
    cached,
    completion,
    error_text,
    json_of,
    latency_ms,
    model_of,
    option,
)
from tollgate_exporter.sinks.base import ExportItem, request
from tollgate_shared.events import LlmRequestFailed

DEFAULT_BASE = "https://api.galileo.ai"


def usable(o: dict[str, Any]) -> str | None:
    """A project, and an API key or a login (whose host has no default)."""
    if not o["project"] or not (o["key"] or (o["base"] and o["user"] and o["password"])):
        return (
            "galileo needs GALILEO_PROJECT_ID and GALILEO_API_KEY, or GALILEO_BASE_URL with "
            "GALILEO_USERNAME/GALILEO_PASSWORD"
        )
    o["base"] = o["base"] or DEFAULT_BASE
    return None


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content)
    return "" if content is None else json.dumps(content, default=str)


def _messages(item: ExportItem) -> list[dict[str, str]]:
    if item.redacted or not isinstance(item.event.messages, list):
        return [{"role": "user", "content": REDACTED if item.redacted else ""}]
    return [
        {"role": str(m.get("role", "user")), "content": _text(m.get("content"))}
        for m in item.event.messages
        if isinstance(m, dict)
    ]


def _output(item: ExportItem) -> str:
    out = completion(item)
    if isinstance(out, dict):
        return _text(out.get("content"))
    return error_text(item.event) or ""


def _status(item: ExportItem) -> int:
    return item.event.status_code if isinstance(item.event, LlmRequestFailed) else 200


def _user_metadata(item: ExportItem) -> dict[str, str]:
    e = item.event
    meta = {
        "request_id": e.request_id,
        "response_cost": str(e.spend),
        "key_alias": e.key_alias,
        "team_id": e.team_id,
        "user_id": e.user_id,
        "session_id": e.session_id,
        "trace_id": e.trace_id,
    }
    return {k: str(v) for k, v in meta.items() if v}


def span(item: ExportItem) -> dict[str, Any]:
    e = item.event
    return {
        "type": "llm",
        "name": e.call_type,
        "created_at": e.start_time.isoformat().replace("+00:00", "Z"),
        "input": _messages(item),
        "output": {"role": "assistant", "content": _output(item)},
        "status_code": _status(item),
        "model": model_of(e),
        "tags": list(e.tags),
        "metrics": {
            "duration_ns": latency_ms(e) * 1_000_000,
            "num_input_tokens": e.prompt_tokens,
            "num_output_tokens": e.completion_tokens,
        },
        "user_metadata": _user_metadata(item),
    }


def observe_record(item: ExportItem) -> dict[str, Any]:
    e = item.event
    return {
        "latency_ms": latency_ms(e),
        "status_code": _status(item),
        "input_text": "\n".join(m["content"] for m in _messages(item)),
        "output_text": _output(item),
        "node_type": e.call_type,
        "model": model_of(e),
        "num_input_tokens": e.prompt_tokens,
        "num_output_tokens": e.completion_tokens,
        "created_at": e.start_time.strftime("%Y-%m-%dT%H:%M:%S"),
        "tags": list(e.tags),
        "user_metadata": _user_metadata(item),
    }


def spans(o: Options, calls: list[Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"spans": calls, "reliable": False}
    if o["stream"]:
        body["log_stream_id"] = o["stream"]
    return body


async def render(ctx: RenderContext, dest: Destination, items: Sequence[ExportItem]) -> list[Part]:
    """The hosted API with its key; else Observe, with a token from the login."""
    o = dest.options
    if o["key"]:
        return API.posts(
            o,
            f"{o['base']}/v2/projects/{o['project']}/spans",
            items,
            range(len(items)),
            envelope=lambda calls: spans(o, calls),
        )

    async def login() -> str:
        response = await request(
            ctx.client,
            "POST",
            f"{o['base']}/login",
            "galileo login",
            data={"username": o["user"], "password": o["password"]},
        )
        return str(json_of(response, "galileo login")["access_token"])

    token = await cached(ctx.cache, "token", login)
    return LOGIN.posts(
        {"token": token},
        f"{o['base']}/projects/{o['project']}/observe/ingest",
        items,
        range(len(items)),
    )


API = HttpApi(
    "galileo",
    {
        "key": Setting("galileo_api_key", ("GALILEO_API_KEY",), secret=True),
        "user": Setting("galileo_username", ("GALILEO_USERNAME",), secret=True),
        "password": Setting("galileo_password", ("GALILEO_PASSWORD",), secret=True),
        "project": option("galileo_project_id", "GALILEO_PROJECT_ID"),
        # no default for a login's host; the hosted API's when there is a key (`usable`)
        "base": Setting("galileo_base_url", ("GALILEO_BASE_URL",), endpoint=True, base=True),
        "stream": option("galileo_log_stream_id", "GALILEO_LOG_STREAM_ID"),
    },
    finish=usable,
    auth=("Galileo-API-Key", "{key}"),
    payload=lambda item, _: span(item),
    batch=ALL,
    render=render,
    identity=("base", "project", "key", "user", "password", "stream"),
    label=("base", "project"),
)
# The enterprise login's Observe API: the same sink, a bearer token, records.
LOGIN = HttpApi(
    "galileo",
    {},
    auth=("authorization", "Bearer {token}"),
    payload=lambda item, _: observe_record(item),
    batch=ALL,
    envelope=lambda records: {"records": records},
)
SINK = API.sink
