"""`datadog_llm_observability`: Datadog LLM Observability, one `llm` span per call posted to
the LLM Observability span intake, as LiteLLM's integration does.

`POST https://api.{DD_SITE}/api/intake/llm-obs/v1/trace/spans`, `DD-API-KEY` header, body
`{"data": {"type": "span", "attributes": {"ml_app", "tags", "spans": [...]}}}`; each span has
`trace_id`, `span_id`, `parent_id` ("undefined"), `name`, `start_ns`, `duration` (ns),
`status` (`ok`/`error`), `meta` (`kind: llm`, model name and provider, input/output messages
— only when content may leave —, metadata, error), `metrics` (input/output/total tokens,
`total_cost`), `tags` and `session_id`.

Settings: `DD_API_KEY`, `DD_SITE` (default `datadoghq.com`), `DD_ML_APP` (default `litellm`),
`DD_ENV`, `DD_SERVICE`, `DD_LLMOBS_URL` (a full intake URL, for an Agent or a proxy);
callback variables of the same names in lower case.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from tollgate_exporter.content import REDACTED, output_message, standard_metadata, user_metadata
from tollgate_exporter.destinations import Destination, digest, safe_url
from tollgate_exporter.sinks.base import BatchResult, ExportItem, SinkContext, SinkType, post
from tollgate_exporter.sinks.otel import VendorSettings, span_ids
from tollgate_shared.events import LlmRequestCompleted, LlmRequestFailed

PATH = "/api/intake/llm-obs/v1/trace/spans"


def destination(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    v = VendorSettings(vars_, env, ("DD_SITE", "DD_LLMOBS_URL"))
    api_key = v.secret("DD_API_KEY")
    if not api_key:
        return "datadog_llm_observability needs dd_api_key (DD_API_KEY)"
    url = v.get("DD_LLMOBS_URL") or f"https://api.{v.get('DD_SITE') or 'datadoghq.com'}{PATH}"
    options = {
        "url": url,
        "api_key": api_key,
        "ml_app": v.get("DD_ML_APP") or "litellm",
        "tags": [
            f"env:{v.get('DD_ENV') or 'unknown'}",
            f"service:{v.get('DD_SERVICE') or 'litellm-server'}",
        ],
    }
    return Destination(
        "datadog_llm_observability",
        f"datadog_llm_observability:{digest(options)}",
        f"datadog_llm_observability {safe_url(url)} {options['ml_app']}",
        options,
    )


def _messages(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        return []
    return [
        {"role": str(m.get("role", "")), "content": str(m.get("content") or "")}
        for m in value
        if isinstance(m, dict)
    ]


def llm_span(item: ExportItem) -> dict[str, Any]:
    e = item.event
    trace_id, span_id, _ = span_ids(e)
    failed = isinstance(e, LlmRequestFailed)
    if item.redacted:
        input_ = [{"role": "user", "content": REDACTED}]
        output = [{"role": "assistant", "content": REDACTED}]
    else:
        input_ = _messages(e.messages)
        out = output_message(e) if isinstance(e, LlmRequestCompleted) else None
        output = _messages([out]) if isinstance(out, dict) else []
    meta: dict[str, Any] = {
        "kind": "llm",
        "model_name": e.model or e.requested_model,
        "model_provider": e.custom_llm_provider or "unknown",
        "input": {"messages": input_},
        "output": {"messages": [] if failed else output},
        "metadata": {
            **user_metadata(e),
            **standard_metadata(e),
            "request_id": e.request_id,
            "model_group": e.model_group,
        },
    }
    if isinstance(e, LlmRequestFailed):
        meta["error"] = {
            "message": e.error_message,
            "type": e.error_class,
            "stack": "",
        }
    tags = [f"team:{e.team_id or 'none'}", f"key_alias:{e.key_alias or 'none'}", *e.tags]
    return {
        "parent_id": "undefined",
        "trace_id": f"{trace_id:032x}",
        "span_id": str(span_id),
        "name": f"litellm_{e.call_type}",
        "start_ns": int(e.start_time.timestamp() * 1e9),
        "duration": int((e.end_time - e.start_time).total_seconds() * 1e9),
        "status": "error" if failed else "ok",
        "session_id": e.session_id,
        "meta": meta,
        "metrics": {
            "input_tokens": e.prompt_tokens,
            "output_tokens": e.completion_tokens,
            "total_tokens": e.total_tokens,
            "total_cost": float(e.spend),
            "time_to_first_token": (
                (e.completion_start_time - e.start_time).total_seconds()
                if e.completion_start_time
                else None
            ),
        },
        "tags": tags,
    }


class DatadogLlmObsSink:
    kind = "datadog_llm_observability"

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def send(self, destination: Destination, items: Sequence[ExportItem]) -> BatchResult:
        opts = destination.options
        body = {
            "data": {
                "type": "span",
                "attributes": {
                    "ml_app": opts["ml_app"],
                    "tags": list(opts["tags"]),
                    "spans": [llm_span(i) for i in items],
                },
            }
        }
        await post(
            self._client,
            opts["url"],
            "datadog llm observability",
            json=body,
            headers={"DD-API-KEY": opts["api_key"], "content-type": "application/json"},
        )
        return BatchResult()

    async def close(self) -> None:
        """Nothing of its own to release (the HTTP client is shared)."""


def create(ctx: SinkContext) -> DatadogLlmObsSink:
    return DatadogLlmObsSink(ctx.client)


SINK = SinkType(
    kind="datadog_llm_observability",
    names=("datadog_llm_observability",),
    destination=destination,
    create=create,
)
