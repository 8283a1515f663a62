"""OpenTelemetry sink: one CLIENT span per call, GenAI semantic conventions, sent over OTLP.

Spans are built as SDK `ReadableSpan`s with the request's own start and end
times and encoded by the OTLP exporter's encoder into an
`ExportTraceServiceRequest`; OTLP/HTTP posts it (protobuf) with the shared httpx
client, OTLP/gRPC sends it with a grpc.aio channel per destination, `console`
prints it as JSON. The SDK's exporters are not used for sending because they are
blocking, retry on their own and keep one endpoint per process; here each
destination has its own worker and the exporter's own retry policy.

Metrics (the `otel` callback, not the vendor presets): each batch is also sent as GenAI
semantic-convention histograms over OTLP beside the spans (`gen_ai.client.token.usage` by
`gen_ai.token.type`, `gen_ai.client.operation.duration`, and time to first token as
`gen_ai.client.operation.time_to_first_chunk`), aggregated per attribute set with DELTA
temporality over the batch's calls (SDK `MetricsData` encoded by the OTLP encoder), to
`/v1/metrics` beside `/v1/traces` or the gRPC metrics service. `otel_metrics_exporter` /
`OTEL_METRICS_EXPORTER=none` turns them off; `otel_metrics_endpoint` /
`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` names their URL. A collector without a metrics
pipeline (404, UNIMPLEMENTED) is logged once and does not fail the spans; a retryable
failure retries the batch (spans are idempotent by id; metrics are counted once unless a
collector accepted them and the answer was lost).

Ids: the trace continues the request's `traceparent` (trace id and parent span)
when there is one, else it is derived from the event id; the span id is always
derived from the event id, so a redelivered event is the same span.

Callback names: `otel` (and `opentelemetry`). Destination: exporter, endpoint,
headers and service name from the callback variables (`otel_exporter`,
`otel_endpoint`, `otel_traces_endpoint`, `otel_headers`, `otel_service_name`), else
`OTEL_*` in the environment (the OpenTelemetry SDK's names and LiteLLM's).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import sys
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import grpc
import httpx
from google.protobuf.json_format import MessageToJson
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2_grpc import MetricsServiceStub
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    Metric,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.metrics.export import Histogram as HistogramData
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics
from opentelemetry.semconv.attributes import error_attributes, server_attributes
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from tollgate_exporter.content import output_message, standard_metadata, user_metadata
from tollgate_exporter.destinations import (
    Destination,
    digest,
    parse_headers,
    pick,
    safe_url,
    truthy,
)
from tollgate_exporter.sinks.base import (
    BatchResult,
    ExportItem,
    PermanentError,
    RetryableError,
    SinkContext,
    SinkType,
    post,
)
from tollgate_shared.events import LlmRequestCompleted, LlmRequestFailed, LlmRequestFinished

log = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "tollgate"
SCOPE = InstrumentationScope("tollgate.exporter", "1")
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_OPERATIONS = {
    "completion": gen_ai.GenAiOperationNameValues.CHAT.value,
    "acompletion": gen_ai.GenAiOperationNameValues.CHAT.value,
    "aresponses": gen_ai.GenAiOperationNameValues.CHAT.value,
    "aembedding": gen_ai.GenAiOperationNameValues.EMBEDDINGS.value,
    "text_completion": gen_ai.GenAiOperationNameValues.TEXT_COMPLETION.value,
}
# LiteLLM provider prefixes -> gen_ai.provider.name well-known values.
_PROVIDERS = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "anthropic": "anthropic",
    "bedrock": "aws.bedrock",
    "vertex_ai": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "cohere": "cohere",
    "mistral": "mistral_ai",
    "groq": "groq",
    "deepseek": "deepseek",
    "xai": "x_ai",
    "perplexity": "perplexity",
    "watsonx": "ibm.watsonx.ai",
}
_REQUEST_PARAMS = {
    "temperature": gen_ai.GEN_AI_REQUEST_TEMPERATURE,
    "top_p": gen_ai.GEN_AI_REQUEST_TOP_P,
    "max_tokens": gen_ai.GEN_AI_REQUEST_MAX_TOKENS,
    "max_completion_tokens": gen_ai.GEN_AI_REQUEST_MAX_TOKENS,
    "frequency_penalty": gen_ai.GEN_AI_REQUEST_FREQUENCY_PENALTY,
    "presence_penalty": gen_ai.GEN_AI_REQUEST_PRESENCE_PENALTY,
    "seed": gen_ai.GEN_AI_REQUEST_SEED,
}
# The GenAI semantic conventions' advised explicit bucket boundaries.
TOKEN_BUCKETS: tuple[float, ...] = tuple(float(4**i) for i in range(14))  # 1 .. 67108864
DURATION_BUCKETS: tuple[float, ...] = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
_RETRYABLE_GRPC = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
    }
)


_EXPORTERS = {
    "otlp": "otlp_http",
    "http": "otlp_http",
    "grpc": "otlp_grpc",
    "otlp_http": "otlp_http",
    "otlp_grpc": "otlp_grpc",
    "console": "console",
}


def _target(exporter: str, traces_endpoint: str | None, endpoint: str | None) -> str | None:
    """The URL an exporter sends to (None: the console)."""
    if exporter == "otlp_http":
        if traces_endpoint:
            return traces_endpoint
        if endpoint:
            base = endpoint.rstrip("/")
            return base if base.endswith("/v1/traces") else f"{base}/v1/traces"
        return "http://localhost:4318/v1/traces"
    if exporter == "otlp_grpc":
        return traces_endpoint or endpoint or "http://localhost:4317"
    return None


def _metrics_target(
    traces_endpoint: str | None, endpoint: str | None, own: str | None
) -> str | None:
    """The URL OTLP/HTTP metrics are posted to: `/v1/metrics` beside `/v1/traces` (None: a
    traces URL of another shape says nothing about where metrics go)."""
    if own:
        return own
    if endpoint and not traces_endpoint:
        return endpoint.rstrip("/").removesuffix("/v1/traces") + "/v1/metrics"
    traces = _target("otlp_http", traces_endpoint, endpoint) or ""
    return (
        traces.removesuffix("/v1/traces") + "/v1/metrics" if traces.endswith("/v1/traces") else None
    )


def _global_target(env: Mapping[str, str]) -> tuple[str, str | None, str | None]:
    """The global collector's (exporter, traces endpoint, endpoint), from the environment."""
    traces_endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_ENDPOINT")
    exporter = (
        env.get("OTEL_EXPORTER") or ("otlp_http" if (traces_endpoint or endpoint) else "console")
    ).lower()
    return _EXPORTERS.get(exporter, exporter), traces_endpoint, endpoint


def destination(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    """An OTLP collector (HTTP or gRPC) or the console, with headers and service name."""
    traces_endpoint = pick(vars_, "otel_traces_endpoint") or env.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    endpoint = (
        pick(vars_, "otel_endpoint")
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or env.get("OTEL_ENDPOINT")
    )
    exporter = (
        pick(vars_, "otel_exporter")
        or env.get("OTEL_EXPORTER")
        or ("otlp_http" if (traces_endpoint or endpoint) else "console")
    ).lower()
    if exporter not in _EXPORTERS:
        return f"OTEL_EXPORTER {exporter!r} is not one of otlp_http, otlp_grpc, console"
    exporter = _EXPORTERS[exporter]
    # The environment's headers (credentials) belong to the global collector: a callback
    # that names another endpoint gets only the headers it names itself.
    own_target = pick(vars_, "otel_traces_endpoint", "otel_endpoint", "otel_exporter")
    global_headers = not own_target or (
        _target(exporter, traces_endpoint, endpoint) == _target(*_global_target(env))
    )
    headers = parse_headers(
        vars_.get("otel_headers")
        or (
            (
                env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
                or env.get("OTEL_EXPORTER_OTLP_HEADERS")
                or env.get("OTEL_HEADERS")
            )
            if global_headers
            else None
        )
    )
    service = (
        pick(vars_, "otel_service_name") or env.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME
    )
    capture = truthy(
        vars_.get(
            "otel_capture_message_content",
            env.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"),
        )
    )
    url = _target(exporter, traces_endpoint, endpoint)
    metrics_exporter = str(
        pick(vars_, "otel_metrics_exporter") or env.get("OTEL_METRICS_EXPORTER") or "otlp"
    ).lower()
    own_metrics = pick(vars_, "otel_metrics_endpoint") or env.get(
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
    )
    metrics_url = (
        _metrics_target(traces_endpoint, endpoint, own_metrics) if exporter == "otlp_http" else None
    )
    metrics = metrics_exporter != "none" and (exporter != "otlp_http" or metrics_url is not None)
    options = {
        "exporter": exporter,
        "url": url,
        "headers": headers,
        "service_name": service,
        "capture_content": capture is not False,
        "metrics": metrics,
        "metrics_url": metrics_url,
    }
    label_target = safe_url(url) if url else "stdout"
    # Only a non-default metrics choice enters the identity, so existing keys stay.
    extra = () if metrics and not own_metrics else (metrics, own_metrics)
    return Destination(
        "otel",
        f"otel:{digest(exporter, url, headers, service, capture, *extra)}",
        f"otel {exporter} {label_target}",
        options,
    )


def _id_bits(event_id: str, purpose: str, nbytes: int) -> int:
    value = int.from_bytes(hashlib.sha256(f"{event_id}|{purpose}".encode()).digest()[:nbytes])
    return value or 1


def span_ids(event: LlmRequestFinished) -> tuple[int, int, SpanContext | None]:
    """(trace id, span id, parent) for an event: continued from its traceparent if valid."""
    span_id = _id_bits(event.event_id, "span", 8)
    m = _TRACEPARENT.match((event.traceparent or "").strip().lower())
    if m and m.group(1) != "ff" and int(m.group(2), 16) and int(m.group(3), 16):
        trace_id = int(m.group(2), 16)
        state = TraceState.from_header([event.tracestate]) if event.tracestate else None
        parent = SpanContext(
            trace_id,
            int(m.group(3), 16),
            is_remote=True,
            trace_flags=TraceFlags(int(m.group(4), 16) & 1),
            trace_state=state,
        )
        return trace_id, span_id, parent
    return _id_bits(event.event_id, "trace", 16), span_id, None


def _ns(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1_000_000) * 1000


def _parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    for p in content if isinstance(content, list) else [content]:
        if isinstance(p, dict) and p.get("type") == "text":
            parts.append({"type": "text", "content": p.get("text")})
        elif isinstance(p, dict) and p.get("type") == "image_url":
            url = (
                (p.get("image_url") or {}).get("url")
                if isinstance(p.get("image_url"), dict)
                else None
            )
            parts.append({"type": "uri", "modality": "image", "uri": url})
        else:
            parts.append({"type": "text", "content": json.dumps(p, default=str)})
    return parts


def _message(m: Any) -> dict[str, Any]:
    """An OpenAI chat message in the GenAI semconv message format."""
    if not isinstance(m, dict):
        return {"role": "user", "parts": _parts(m)}
    role = m.get("role", "user")
    if role == "tool":
        return {
            "role": "tool",
            "parts": [
                {
                    "type": "tool_call_response",
                    "id": m.get("tool_call_id"),
                    "response": m.get("content"),
                }
            ],
        }
    parts = _parts(m.get("content"))
    for call in m.get("tool_calls") or []:
        if not isinstance(call, dict):
            continue
        fn = call.get("function") or {}
        args: Any = fn.get("arguments")
        if isinstance(args, str):
            with contextlib.suppress(ValueError):
                args = json.loads(args)
        parts.append(
            {"type": "tool_call", "id": call.get("id"), "name": fn.get("name"), "arguments": args}
        )
    return {"role": role, "parts": parts}


def content_attributes(event: LlmRequestFinished) -> dict[str, str]:
    """The opt-in `gen_ai.input.messages` / `gen_ai.output.messages` (JSON strings)."""
    out: dict[str, str] = {}
    if isinstance(event.messages, list):
        out[gen_ai.GEN_AI_INPUT_MESSAGES] = json.dumps(
            [_message(m) for m in event.messages], default=str
        )
    if isinstance(event, LlmRequestCompleted) and isinstance(event.response, dict):
        outputs = []
        for choice in event.response.get("choices") or []:
            if isinstance(choice, dict) and isinstance(choice.get("message"), dict):
                msg = _message(choice["message"])
                msg["finish_reason"] = choice.get("finish_reason") or ""
                outputs.append(msg)
        if not outputs and output_message(event) is not None:
            outputs.append({"role": "assistant", "parts": _parts(output_message(event))})
        if outputs:
            out[gen_ai.GEN_AI_OUTPUT_MESSAGES] = json.dumps(outputs, default=str)
    return out


def call_attributes(event: LlmRequestFinished) -> dict[str, Any]:
    """What spans and metrics share: operation, provider, requested model, server."""
    operation = _OPERATIONS.get(event.call_type, gen_ai.GenAiOperationNameValues.CHAT.value)
    provider = event.custom_llm_provider
    attrs: dict[str, Any] = {
        gen_ai.GEN_AI_OPERATION_NAME: operation,
        gen_ai.GEN_AI_PROVIDER_NAME: _PROVIDERS.get(provider or "", provider or "unknown"),
        gen_ai.GEN_AI_REQUEST_MODEL: event.requested_model,
    }
    if event.api_base:
        parts = urlsplit(event.api_base)
        if parts.hostname:
            attrs[server_attributes.SERVER_ADDRESS] = parts.hostname
            attrs[server_attributes.SERVER_PORT] = parts.port or (
                443 if parts.scheme == "https" else 80
            )
    return attrs


def span_attributes(item: ExportItem, capture_content: bool) -> dict[str, Any]:
    event = item.event
    attrs: dict[str, Any] = {
        **call_attributes(event),
        gen_ai.GEN_AI_USAGE_INPUT_TOKENS: event.prompt_tokens,
        gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS: event.completion_tokens,
        "tollgate.request.id": event.request_id,
        "tollgate.call_type": event.call_type,
        "tollgate.cost.usd": float(event.spend),
        "tollgate.cache_hit": event.cache_hit,
        "tollgate.content.redacted": item.redacted,
    }
    if event.cached_tokens:
        attrs[gen_ai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = event.cached_tokens
    if event.session_id:
        attrs[gen_ai.GEN_AI_CONVERSATION_ID] = event.session_id
    for param, attr in _REQUEST_PARAMS.items():
        value = event.model_parameters.get(param)
        if isinstance(value, int | float) and not isinstance(value, bool):
            attrs[attr] = value
    stop = event.model_parameters.get("stop")
    if stop:
        attrs[gen_ai.GEN_AI_REQUEST_STOP_SEQUENCES] = (
            [stop] if isinstance(stop, str) else [str(s) for s in stop]
        )
    optional = {
        "tollgate.key.alias": event.key_alias,
        "tollgate.key.hash": event.api_key_hash,
        "tollgate.team.id": event.team_id,
        "tollgate.team.alias": event.team_alias,
        "tollgate.user.id": event.user_id,
        "tollgate.end_user": event.end_user,
        "tollgate.model_group": event.model_group,
        "tollgate.model_id": event.model_id,
        "tollgate.trace_id": event.trace_id,
    }
    attrs.update({k: v for k, v in optional.items() if v})
    if event.tags:
        attrs["tollgate.tags"] = list(event.tags)
    if isinstance(event, LlmRequestCompleted):
        if event.response_id:
            attrs[gen_ai.GEN_AI_RESPONSE_ID] = event.response_id
        if event.response_model or event.model:
            attrs[gen_ai.GEN_AI_RESPONSE_MODEL] = event.response_model or event.model
        if event.finish_reasons:
            attrs[gen_ai.GEN_AI_RESPONSE_FINISH_REASONS] = list(event.finish_reasons)
    if isinstance(event, LlmRequestFailed):
        attrs[error_attributes.ERROR_TYPE] = event.error_class or str(event.status_code)
        attrs["http.response.status_code"] = event.status_code
    if capture_content and not item.redacted:
        attrs.update(content_attributes(event))
    return attrs


def _json(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


def openinference_attributes(item: ExportItem, capture_content: bool) -> dict[str, Any]:
    """OpenInference's LLM span attributes (what Arize, Phoenix and Weave read)."""
    event = item.event
    attrs: dict[str, Any] = {
        "openinference.span.kind": "LLM",
        "llm.model_name": event.model or event.requested_model,
        "llm.provider": event.custom_llm_provider or "unknown",
        "llm.token_count.prompt": event.prompt_tokens,
        "llm.token_count.completion": event.completion_tokens,
        "llm.token_count.total": event.total_tokens,
        "llm.cost.total": float(event.spend),
        "llm.invocation_parameters": _json(
            {k: v for k, v in event.model_parameters.items() if isinstance(v, str | int | float)}
        ),
        "metadata": _json({**standard_metadata(event), **user_metadata(event)}),
    }
    if event.session_id:
        attrs["session.id"] = event.session_id
    if event.end_user or event.user_id:
        attrs["user.id"] = event.end_user or event.user_id
    if event.tags:
        attrs["tag.tags"] = list(event.tags)
    if capture_content and not item.redacted:
        if event.messages is not None:
            attrs["input.value"] = _json({"messages": event.messages})
            attrs["input.mime_type"] = "application/json"
        output = output_message(event) if isinstance(event, LlmRequestCompleted) else None
        if output is not None:
            attrs["output.value"] = output if isinstance(output, str) else _json(output)
            attrs["output.mime_type"] = (
                "text/plain" if isinstance(output, str) else ("application/json")
            )
    return attrs


def langfuse_attributes(item: ExportItem, capture_content: bool) -> dict[str, Any]:
    """Langfuse's OTLP attributes (`langfuse.*`): a generation with usage, cost and trace fields."""
    event = item.event
    meta = user_metadata(event)
    attrs: dict[str, Any] = {
        "langfuse.observation.type": "generation",
        "langfuse.observation.model.name": event.model or event.requested_model,
        "langfuse.observation.usage_details": _json(
            {
                "input": event.prompt_tokens,
                "output": event.completion_tokens,
                "total": event.total_tokens,
            }
        ),
        "langfuse.observation.cost_details": _json({"total": float(event.spend)}),
        "langfuse.trace.name": str(meta.get("trace_name") or f"litellm-{event.call_type}"),
    }
    for k, v in standard_metadata(event).items():
        attrs[f"langfuse.observation.metadata.{k}"] = str(v)
    if event.session_id:
        attrs["langfuse.session.id"] = event.session_id
    if event.end_user or event.user_id:
        attrs["langfuse.user.id"] = event.end_user or event.user_id
    if event.tags:
        attrs["langfuse.trace.tags"] = list(event.tags)
    if isinstance(event, LlmRequestFailed):
        attrs["langfuse.observation.level"] = "ERROR"
        attrs["langfuse.observation.status_message"] = (
            f"{event.error_class}: {event.error_message}"[:1000]
        )
    if capture_content and not item.redacted:
        if event.messages is not None:
            attrs["langfuse.observation.input"] = _json(event.messages)
        output = output_message(event) if isinstance(event, LlmRequestCompleted) else None
        if output is not None:
            attrs["langfuse.observation.output"] = _json(output)
    return attrs


# Attribute sets beside the GenAI semantic conventions that a vendor's preset may ask for.
CONVENTIONS = {"openinference": openinference_attributes, "langfuse": langfuse_attributes}


def build_span(
    item: ExportItem,
    resource: Resource,
    capture_content: bool,
    conventions: Sequence[str] = (),
) -> ReadableSpan:
    event = item.event
    trace_id, span_id, parent = span_ids(event)
    attrs = span_attributes(item, capture_content)
    for convention in conventions:
        attrs.update(CONVENTIONS[convention](item, capture_content))
    status = Status(StatusCode.UNSET)
    if isinstance(event, LlmRequestFailed):
        status = Status(StatusCode.ERROR, f"{event.error_class}: {event.error_message}"[:1000])
    return ReadableSpan(
        name=f"{attrs[gen_ai.GEN_AI_OPERATION_NAME]} {event.requested_model}",
        context=SpanContext(
            trace_id, span_id, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED)
        ),
        parent=parent,
        resource=resource,
        attributes=attrs,
        kind=SpanKind.CLIENT,
        status=status,
        start_time=_ns(event.start_time),
        end_time=_ns(event.end_time),
        instrumentation_scope=SCOPE,
    )


def _resource(service_name: str, resource_attributes: Mapping[str, Any] | None) -> Resource:
    return Resource(
        {
            **(resource_attributes or {}),
            "service.name": service_name,
            "telemetry.sdk.name": "tollgate",
        }
    )


def build_request(
    items: Sequence[ExportItem],
    service_name: str,
    capture_content: bool = True,
    resource_attributes: Mapping[str, Any] | None = None,
    conventions: Sequence[str] = (),
) -> ExportTraceServiceRequest:
    resource = _resource(service_name, resource_attributes)
    return encode_spans([build_span(i, resource, capture_content, conventions) for i in items])


# --- metrics: GenAI semantic-convention histograms of a batch ----------------------

Observation = tuple[dict[str, Any], float]


def _histogram(
    name: str,
    description: str,
    unit: str,
    bounds: tuple[float, ...],
    observations: Iterable[Observation],
    window: tuple[int, int],
) -> Metric | None:
    """One DELTA histogram: a data point per attribute set, over the batch's window."""
    groups: dict[tuple[tuple[str, Any], ...], list[float]] = {}
    for attrs, value in observations:
        groups.setdefault(tuple(sorted(attrs.items())), []).append(value)
    if not groups:
        return None
    points = []
    for key, values in groups.items():
        counts = [0] * (len(bounds) + 1)
        for v in values:
            counts[bisect_left(bounds, v)] += 1  # bucket i holds (bounds[i-1], bounds[i]]
        points.append(
            HistogramDataPoint(
                attributes=dict(key),
                start_time_unix_nano=window[0],
                time_unix_nano=window[1],
                count=len(values),
                sum=sum(values),
                bucket_counts=counts,
                explicit_bounds=bounds,
                min=min(values),
                max=max(values),
            )
        )
    data = HistogramData(points, AggregationTemporality.DELTA)
    return Metric(name=name, description=description, unit=unit, data=data)


def metric_observations(
    events: Sequence[LlmRequestFinished],
) -> tuple[list[Observation], list[Observation], list[Observation]]:
    """(token usage, operation duration, time to first token) of each call, with the
    semantic conventions' attributes (low cardinality: no key, user or request ids)."""
    tokens: list[Observation] = []
    durations: list[Observation] = []
    ttft: list[Observation] = []
    for event in events:
        attrs = call_attributes(event)
        if isinstance(event, LlmRequestFailed):
            attrs[error_attributes.ERROR_TYPE] = event.error_class or str(event.status_code)
        elif isinstance(event, LlmRequestCompleted) and (event.response_model or event.model):
            attrs[gen_ai.GEN_AI_RESPONSE_MODEL] = event.response_model or event.model
        durations.append((attrs, event.total_latency_ms / 1000))
        if not isinstance(event, LlmRequestCompleted):
            continue
        input_type = gen_ai.GenAiTokenTypeValues.INPUT.value
        tokens.append(({**attrs, gen_ai.GEN_AI_TOKEN_TYPE: input_type}, event.prompt_tokens))
        if attrs[gen_ai.GEN_AI_OPERATION_NAME] != gen_ai.GenAiOperationNameValues.EMBEDDINGS.value:
            output_type = gen_ai.GenAiTokenTypeValues.COMPLETION.value
            tokens.append(
                ({**attrs, gen_ai.GEN_AI_TOKEN_TYPE: output_type}, event.completion_tokens)
            )
        # The same calls as litellm_llm_api_time_to_first_token_metric, so both agree.
        if event.completion_start_time is not None:
            first = (event.completion_start_time - event.start_time).total_seconds()
            ttft.append((attrs, first))
    return tokens, durations, ttft


def build_metrics(
    items: Sequence[ExportItem],
    service_name: str,
    resource_attributes: Mapping[str, Any] | None = None,
) -> ExportMetricsServiceRequest | None:
    """The batch's GenAI histograms (None: nothing to send)."""
    events = [i.event for i in items]
    if not events:
        return None
    window = (min(_ns(e.start_time) for e in events), max(_ns(e.end_time) for e in events))
    tokens, durations, ttft = metric_observations(events)
    metrics = [
        m
        for m in (
            _histogram(
                gen_ai_metrics.GEN_AI_CLIENT_TOKEN_USAGE,
                "Number of input and output tokens used.",
                "{token}",
                TOKEN_BUCKETS,
                tokens,
                window,
            ),
            _histogram(
                gen_ai_metrics.GEN_AI_CLIENT_OPERATION_DURATION,
                "GenAI operation duration.",
                "s",
                DURATION_BUCKETS,
                durations,
                window,
            ),
            _histogram(
                gen_ai_metrics.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK,
                "Time to receive the first chunk (time to first token).",
                "s",
                DURATION_BUCKETS,
                ttft,
                window,
            ),
        )
        if m is not None
    ]
    resource = _resource(service_name, resource_attributes)
    scope = ScopeMetrics(scope=SCOPE, metrics=metrics, schema_url="")
    data = MetricsData([ResourceMetrics(resource=resource, scope_metrics=[scope], schema_url="")])
    return encode_metrics(data)


# --- presets: a vendor's OTLP endpoint, headers and resource attributes ----------


class VendorSettings:
    """A vendor's settings, LiteLLM-style: the callback variable (the environment
    variable's name in lower case, e.g. `arize_api_key`) wins, else the environment.

    The environment's credentials belong to the vendor endpoint the environment
    names: when the callback variables name their own endpoint, credentials come
    from the callback variables only (`secret()`), never from the environment.
    """

    def __init__(
        self, vars_: Mapping[str, Any], env: Mapping[str, str], endpoint_names: Sequence[str]
    ) -> None:
        self._vars = vars_
        self._env = env
        self.own_endpoint = any(pick(vars_, n.lower()) for n in endpoint_names)

    def get(self, *names: str) -> str | None:
        """A setting (endpoint, project): the callback's, else the environment's."""
        found = pick(self._vars, *(n.lower() for n in names))
        if found:
            return found
        return next((self._env[n] for n in names if self._env.get(n)), None)

    def secret(self, *names: str) -> str | None:
        """A credential: the callback's; the environment's only for the environment's endpoint."""
        found = pick(self._vars, *(n.lower() for n in names))
        if found or self.own_endpoint:
            return found
        return next((self._env[n] for n in names if self._env.get(n)), None)


def preset_destination(
    kind: str,
    url: str,
    *,
    headers: Mapping[str, str | None],
    vars_: Mapping[str, Any],
    resource_attributes: Mapping[str, str | None] | None = None,
    conventions: Sequence[str] = (),
    exporter: str = "otlp_http",
    label: str = "",
) -> Destination:
    """A destination for the OTLP sink's sender, with a vendor's endpoint and headers."""
    sent_headers = {k: v for k, v in headers.items() if v}
    resource = {k: v for k, v in (resource_attributes or {}).items() if v}
    service = pick(vars_, "otel_service_name") or DEFAULT_SERVICE_NAME
    capture = truthy(vars_.get("otel_capture_message_content")) is not False
    options = {
        "exporter": exporter,
        "url": url,
        "headers": sent_headers,
        "service_name": service,
        "capture_content": capture,
        "resource_attributes": resource,
        "conventions": tuple(conventions),
    }
    identity = digest(exporter, url, sent_headers, service, capture, resource, conventions)
    return Destination(
        kind, f"{kind}:{identity}", f"{kind} {safe_url(url)} {label}".rstrip(), options
    )


class OtelSink:
    kind = "otel"

    def __init__(self, client: httpx.AsyncClient, timeout_s: float = 10.0) -> None:
        self._client = client
        self._timeout = timeout_s
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._metrics_refused: set[str] = set()

    async def send(self, destination: Destination, items: Sequence[ExportItem]) -> BatchResult:
        opts = destination.options
        request = build_request(
            items,
            opts["service_name"],
            opts["capture_content"],
            opts.get("resource_attributes"),
            opts.get("conventions", ()),
        )
        await self._send(destination, request, opts.get("url"), "otlp")
        if opts.get("metrics"):
            metrics = build_metrics(items, opts["service_name"], opts.get("resource_attributes"))
            if metrics is not None:
                try:
                    await self._send(destination, metrics, opts.get("metrics_url"), "otlp metrics")
                except PermanentError as exc:
                    # A collector without a metrics pipeline still gets its spans.
                    if destination.key not in self._metrics_refused:
                        self._metrics_refused.add(destination.key)
                        log.warning("%s refused metrics (spans sent): %s", destination.label, exc)
        return BatchResult()

    async def _send(
        self,
        destination: Destination,
        request: ExportTraceServiceRequest | ExportMetricsServiceRequest,
        url: str | None,
        what: str,
    ) -> None:
        opts = destination.options
        exporter = opts["exporter"]
        if exporter == "otlp_http":
            await post(
                self._client,
                str(url),
                what,
                content=request.SerializeToString(),
                headers={**opts["headers"], "content-type": "application/x-protobuf"},
            )
        elif exporter == "otlp_grpc":
            await self._send_grpc(destination, request)
        else:
            await asyncio.to_thread(self._print, request)

    @staticmethod
    def _print(request: ExportTraceServiceRequest | ExportMetricsServiceRequest) -> None:
        sys.stdout.write(MessageToJson(request, indent=None) + "\n")
        sys.stdout.flush()

    async def _send_grpc(
        self,
        destination: Destination,
        request: ExportTraceServiceRequest | ExportMetricsServiceRequest,
    ) -> None:
        opts = destination.options
        channel = self._channels.get(destination.key)
        if channel is None:
            url = str(opts["url"])
            parts = urlsplit(url if "://" in url else f"http://{url}")
            target = parts.netloc
            channel = (
                grpc.aio.secure_channel(target, grpc.ssl_channel_credentials())
                if parts.scheme == "https"
                else grpc.aio.insecure_channel(target)
            )
            self._channels[destination.key] = channel
        stub: Any = (
            TraceServiceStub(channel)  # type: ignore[no-untyped-call]
            if isinstance(request, ExportTraceServiceRequest)
            else MetricsServiceStub(channel)  # type: ignore[no-untyped-call]
        )
        metadata = tuple((k.lower(), v) for k, v in opts["headers"].items())
        try:
            await stub.Export(request, metadata=metadata, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            detail = f"otlp grpc {exc.code().name}: {exc.details()}"
            if exc.code() in _RETRYABLE_GRPC:
                raise RetryableError(detail) from exc
            raise PermanentError(detail) from exc

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()


def create(ctx: SinkContext) -> OtelSink:
    return OtelSink(ctx.client, ctx.settings.export_timeout_s)


SINK = SinkType(
    kind="otel",
    names=("otel", "opentelemetry"),
    destination=destination,
    create=create,
)
