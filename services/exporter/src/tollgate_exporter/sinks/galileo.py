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
from collections.abc import Mapping, Sequence
from typing import Any

from tollgate_exporter.content import REDACTED
from tollgate_exporter.destinations import Destination, digest, safe_url
from tollgate_exporter.sinks._http_api import (
    Credentials,
    Part,
    Post,
    RenderContext,
    base_url,
    cached,
    completion,
    create_with,
    error_text,
    json_of,
    latency_ms,
    model_of,
    request,
)
from tollgate_exporter.sinks.base import ExportItem, SinkType
from tollgate_shared.events import LlmRequestFailed

DEFAULT_BASE = "https://api.galileo.ai"


def destination(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    own = ("galileo_api_key", "galileo_username", "galileo_password", "galileo_base_url")
    c = Credentials(vars_, env, own)
    key = c.secret("galileo_api_key", "GALILEO_API_KEY")
    user = c.secret("galileo_username", "GALILEO_USERNAME")
    password = c.secret("galileo_password", "GALILEO_PASSWORD")
    project = c.get("galileo_project_id", "GALILEO_PROJECT_ID")
    raw_base = c.get("galileo_base_url", "GALILEO_BASE_URL") or (DEFAULT_BASE if key else None)
    if not project or not raw_base or not (key or (user and password)):
        return (
            "galileo needs GALILEO_PROJECT_ID and GALILEO_API_KEY, or GALILEO_BASE_URL with "
            "GALILEO_USERNAME/GALILEO_PASSWORD"
        )
    base = base_url(raw_base)
    stream = c.get("galileo_log_stream_id", "GALILEO_LOG_STREAM_ID")
    return Destination(
        "galileo",
        f"galileo:{digest(base, project, key, user, password, stream)}",
        f"galileo {safe_url(base)} {project}",
        {
            "base": base,
            "project": project,
            "key": key,
            "user": user,
            "password": password,
            "stream": stream,
        },
    )


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


async def render(ctx: RenderContext, dest: Destination, items: Sequence[ExportItem]) -> list[Part]:
    o = dest.options
    indices = tuple(range(len(items)))
    if o["key"]:
        body: dict[str, Any] = {"spans": [span(i) for i in items], "reliable": False}
        if o["stream"]:
            body["log_stream_id"] = o["stream"]
        return [
            Post(
                f"{o['base']}/v2/projects/{o['project']}/spans",
                body,
                indices,
                {"Galileo-API-Key": o["key"]},
                what="galileo",
            )
        ]

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
    return [
        Post(
            f"{o['base']}/projects/{o['project']}/observe/ingest",
            {"records": [observe_record(i) for i in items]},
            indices,
            {"authorization": f"Bearer {token}"},
            what="galileo",
        )
    ]


SINK = SinkType(
    kind="galileo",
    names=("galileo",),
    destination=destination,
    create=create_with("galileo", render),
)
