"""`posthog`: one `$ai_generation` event per call, as PostHog's LLM analytics expects,
through the batch capture API (`POST {host}/batch/`, `{"api_key", "batch": [...]}`).

Properties: `$ai_trace_id` (the call's trace id, else its request id), `$ai_span_id`,
`$ai_session_id`, `$ai_model`, `$ai_provider`, `$ai_input_tokens`, `$ai_output_tokens`,
`$ai_latency` (s), `$ai_total_cost_usd`, `$ai_http_status`, `$ai_base_url`,
`$ai_is_error` / `$ai_error`, `$ai_input` / `$ai_output_choices` (only when content may
leave), plus the key alias, team, tags and metadata. `distinct_id` is the end user, else
the user, else the key alias. The envelope `uuid` derives from the event id, so PostHog
de-duplicates a redelivery.

Settings (LiteLLM's): `POSTHOG_API_KEY`, `POSTHOG_API_URL` (default
`https://us.i.posthog.com`); callback variables `posthog_api_key`, `posthog_api_url`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from tollgate_exporter.content import output_message, standard_metadata, user_metadata
from tollgate_exporter.destinations import Destination, digest, safe_url
from tollgate_exporter.sinks.base import (
    BatchResult,
    ExportItem,
    SinkContext,
    SinkType,
    post,
    stable_id,
)
from tollgate_exporter.sinks.otel import VendorSettings
from tollgate_shared.events import LlmRequestCompleted, LlmRequestFailed

DEFAULT_HOST = "https://us.i.posthog.com"
MAX_BATCH = 500  # events per request, well under PostHog's 20 MB body limit


def destination(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    v = VendorSettings(vars_, env, ("POSTHOG_API_URL",))
    api_key = v.secret("POSTHOG_API_KEY")
    if not api_key:
        return "posthog needs posthog_api_key (POSTHOG_API_KEY)"
    host = (v.get("POSTHOG_API_URL") or DEFAULT_HOST).rstrip("/")
    return Destination(
        "posthog",
        f"posthog:{digest(host, api_key)}",
        f"posthog {safe_url(host)}",
        {"url": f"{host}/batch/", "api_key": api_key},
    )


def ai_generation(item: ExportItem) -> dict[str, Any]:
    e = item.event
    failed = isinstance(e, LlmRequestFailed)
    props: dict[str, Any] = {
        "$ai_trace_id": e.trace_id or e.request_id,
        "$ai_span_id": e.request_id,
        "$ai_model": e.model or e.requested_model,
        "$ai_provider": e.custom_llm_provider,
        "$ai_input_tokens": e.prompt_tokens,
        "$ai_output_tokens": e.completion_tokens,
        "$ai_latency": (e.end_time - e.start_time).total_seconds(),
        "$ai_total_cost_usd": float(e.spend),
        "$ai_http_status": e.status_code if isinstance(e, LlmRequestFailed) else 200,
        "$ai_base_url": e.api_base,
        "$ai_is_error": failed,
        "key_alias": e.key_alias,
        "team_id": e.team_id,
        "team_alias": e.team_alias,
        "model_group": e.model_group,
        "request_tags": list(e.tags),
        "metadata": {**user_metadata(e), **standard_metadata(e)},
        "content_redacted": item.redacted,
    }
    if e.session_id:
        props["$ai_session_id"] = e.session_id
    if isinstance(e, LlmRequestFailed):
        props["$ai_error"] = f"{e.error_class}: {e.error_message}"
    if not item.redacted:
        props["$ai_input"] = e.messages
        out = output_message(e) if isinstance(e, LlmRequestCompleted) else None
        if out is not None:
            props["$ai_output_choices"] = [out]
    return {
        "event": "$ai_generation",
        "uuid": stable_id(e.event_id, "posthog"),
        "distinct_id": e.end_user or e.user_id or e.key_alias or e.api_key_hash or "tollgate",
        "timestamp": e.end_time.isoformat(),
        "properties": props,
    }


class PosthogSink:
    kind = "posthog"

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def send(self, destination: Destination, items: Sequence[ExportItem]) -> BatchResult:
        opts = destination.options
        events = [ai_generation(i) for i in items]
        for start in range(0, len(events), MAX_BATCH):
            body = {"api_key": opts["api_key"], "batch": events[start : start + MAX_BATCH]}
            await post(self._client, opts["url"], "posthog", json=body)
        return BatchResult()

    async def close(self) -> None:
        """Nothing of its own to release (the HTTP client is shared)."""


def create(ctx: SinkContext) -> PosthogSink:
    return PosthogSink(ctx.client)


SINK = SinkType(kind="posthog", names=("posthog",), destination=destination, create=create)
