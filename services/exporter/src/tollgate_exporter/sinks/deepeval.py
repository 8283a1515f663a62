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

from typing import Any

from tollgate_exporter.sinks._http_api import (
    HttpApi,
    Options,
    completion,
    endpoint,
    error_text,
    failed,
    iso,
    key,
    metadata,
    model_of,
    option,
    prompt,
)
from tollgate_exporter.sinks.base import ExportItem, stable_id

DEFAULT_BASE = "https://api.confident-ai.com"
ENVIRONMENTS = ("production", "development", "staging")


def known_environment(o: Options) -> str | None:
    if o["environment"] not in ENVIRONMENTS:
        return f"deepeval environment {o['environment']!r} is not one of {', '.join(ENVIRONMENTS)}"
    return None


def trace(item: ExportItem, o: Options) -> dict[str, Any]:
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
        "environment": o["environment"],
    }


API = HttpApi(
    "deepeval",
    {
        "key": key("confident_api_key", "CONFIDENT_API_KEY"),
        "base": endpoint("confident_base_url", "CONFIDENT_BASE_URL", default=DEFAULT_BASE),
        "environment": option(
            "litellm_environment",
            "LITELM_ENVIRONMENT",
            "LITELLM_ENVIRONMENT",
            default="development",
        ),
    },
    auth=("CONFIDENT_API_KEY", "{key}"),
    path="/v1/traces",
    payload=trace,
    identity=("base", "key", "environment"),
    label=("base", "environment"),
    finish=known_environment,
)
SINK = API.sink
