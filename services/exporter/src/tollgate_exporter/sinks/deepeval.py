"""DeepEval sink: each call is a trace with one LLM span, posted to Confident AI's tracing API.

`POST {CONFIDENT_BASE_URL}/v1/traces` (default `https://api.confident-ai.com`) with the
`CONFIDENT_API_KEY` header, one trace per request (the body DeepEval's `TraceApi`
model describes): `uuid`, `startTime`, `endTime`, `environment`, `tags`, `metadata`,
and `llmSpans: [{uuid, traceUuid, name, status: SUCCESS|ERRORED, type: "llm",
startTime, endTime, input, output, error, model, inputTokenCount,
outputTokenCount}]`. Ids derive from the event id (the trace from its trace id).

Credentials: `confident_api_key` (callback var) else `CONFIDENT_API_KEY`; environment
`LITELM_ENVIRONMENT` (LiteLLM's spelling) or `LITELLM_ENVIRONMENT`, default `development`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tollgate_exporter.destinations import Destination, digest, safe_url
from tollgate_exporter.sinks._http_api import (
    Credentials,
    Part,
    Post,
    RenderContext,
    base_url,
    completion,
    create_with,
    error_text,
    failed,
    iso,
    metadata,
    model_of,
    prompt,
)
from tollgate_exporter.sinks.base import ExportItem, SinkType, stable_id

DEFAULT_BASE = "https://api.confident-ai.com"
ENVIRONMENTS = ("production", "development", "staging")


def destination(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    c = Credentials(
        vars_,
        env,
        (
            "confident_api_key",
            "confident_base_url",
        ),
    )
    key = c.secret("confident_api_key", "CONFIDENT_API_KEY")
    if not key:
        return "deepeval needs confident_api_key (or CONFIDENT_API_KEY)"
    base = base_url(c.get("confident_base_url", "CONFIDENT_BASE_URL") or DEFAULT_BASE)
    environment = (
        c.get("litellm_environment", "LITELM_ENVIRONMENT", "LITELLM_ENVIRONMENT") or "development"
    )
    if environment not in ENVIRONMENTS:
        return f"deepeval environment {environment!r} is not one of {', '.join(ENVIRONMENTS)}"
    return Destination(
        "deepeval",
        f"deepeval:{digest(base, key, environment)}",
        f"deepeval {safe_url(base)} {environment}",
        {"base": base, "key": key, "environment": environment},
    )


def trace(item: ExportItem, environment: str) -> dict[str, Any]:
    event = item.event
    trace_id = stable_id(event.trace_id or event.event_id, "deepeval-trace")
    output = completion(item)
    span = {
        "uuid": stable_id(event.event_id, "deepeval-span"),
        "traceUuid": trace_id,
        "name": "litellm_failure_callback" if failed(item) else "litellm_success_callback",
        "status": "ERRORED" if failed(item) else "SUCCESS",
        "type": "llm",
        "startTime": iso(event.start_time),
        "endTime": iso(event.end_time),
        "input": prompt(item),
        "output": output.get("content") if isinstance(output, dict) else output,
        "error": error_text(event),
        "model": model_of(event),
        "inputTokenCount": event.prompt_tokens,
        "outputTokenCount": event.completion_tokens,
    }
    return {
        "uuid": trace_id,
        "baseSpans": [],
        "agentSpans": [],
        "llmSpans": [{k: v for k, v in span.items() if v is not None}],
        "retrieverSpans": [],
        "toolSpans": [],
        "startTime": iso(event.start_time),
        "endTime": iso(event.end_time),
        "metadata": metadata(item),
        "tags": list(event.tags),
        "environment": environment,
    }


async def render(ctx: RenderContext, dest: Destination, items: Sequence[ExportItem]) -> list[Part]:
    o = dest.options
    return [
        Post(
            f"{o['base']}/v1/traces",
            trace(item, o["environment"]),
            (i,),
            {"CONFIDENT_API_KEY": o["key"]},
            what="deepeval",
        )
        for i, item in enumerate(items)
    ]


SINK = SinkType(
    kind="deepeval",
    names=("deepeval",),
    destination=destination,
    create=create_with("deepeval", render),
)
