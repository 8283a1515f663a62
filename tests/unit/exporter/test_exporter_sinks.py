"""Sink rendering: Langfuse's trace + generation, the GenAI span, the webhook document."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import httpx
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from support.receivers import attr_value
from support.receivers.samples import PROMPT, REPLY, completed, failed
from tollgate_exporter.content import redact
from tollgate_exporter.destinations import Destination
from tollgate_exporter.sinks.base import ExportItem, PermanentError, RetryableError
from tollgate_exporter.sinks.langfuse import LangfuseSink, render
from tollgate_exporter.sinks.otel import build_request
from tollgate_exporter.sinks.webhook import WebhookSink, sign
from tollgate_exporter.sinks.webhook import render as render_webhook

LITELLM_META = {
    "generation_name": "ishaan-test-generation",
    "generation_id": "gen-id22",
    "trace_id": "trace-id22",
    "trace_user_id": "user-id2",
    "trace_version": "v7",
    "trace_release": "r1",
    "trace_environment": "prod",
    "trace_flavour": "plum",
    "session_id": "session-1",
    "tags": ["tag1", "tag2"],
    "custom_field": 42,
    "headers": {"authorization": "Bearer sk-secret"},
}


def _bodies(events: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    by_type = {e["type"]: e for e in events}
    return by_type["trace-create"]["body"], by_type["generation-create"]["body"]


def test_langfuse_maps_litellm_metadata() -> None:
    ev = completed(
        "team-a",
        "hash1",
        metadata=LITELLM_META,
        tags=["tag1", "tag2"],
        end_user="end-7",
        cache_hit=True,
    )
    events = render(
        ExportItem(ev, False),
        [
            "cache_hit",
            "user_api_key_alias",
            "user_api_key_team_alias",
            "user_api_key_user_id",
            "user_api_key_user_email",
            "proxy_base_url",
        ],
        "http://gw:4000",
    )
    trace, gen = _bodies(events)
    assert trace["id"] == "trace-id22"
    assert trace["name"] == "litellm-acompletion"
    assert trace["userId"] == "user-id2"  # trace_user_id wins over the end user
    assert trace["sessionId"] == "session-1"
    assert trace["version"] == "v7"
    assert trace["release"] == "r1"
    assert trace["environment"] == "prod"
    assert trace["metadata"] == {"flavour": "plum"}
    assert trace["tags"] == [
        "tag1",
        "tag2",
        "cache_hit:True",
        "user_api_key_alias:alias-1",
        "user_api_key_team_alias:team-a-alias",
        "user_api_key_user_id:user-1",
        "proxy_base_url:http://gw:4000",
    ]
    assert trace["input"] == {"messages": ev.messages}
    assert trace["output"] == {"role": "assistant", "content": REPLY}

    assert gen["id"] == "gen-id22"
    assert gen["traceId"] == "trace-id22"
    assert gen["name"] == "ishaan-test-generation"
    assert gen["model"] == "gpt-4o-2024-08-06"
    assert gen["modelParameters"] == {"temperature": 0.2, "max_tokens": 64}
    assert gen["usage"] == {"input": 9, "output": 8, "total": 17, "unit": "TOKENS"}
    assert gen["costDetails"] == {"total": 0.000123}
    assert gen["startTime"].endswith("Z")
    assert gen["completionStartTime"] < gen["endTime"]
    assert gen["level"] == "DEFAULT"
    meta = gen["metadata"]
    assert meta["custom_field"] == 42
    assert meta["user_api_key_alias"] == "alias-1"
    assert "headers" not in meta
    assert "generation_name" not in meta
    assert "trace_id" not in meta
    assert "sk-secret" not in json.dumps(events)


def test_langfuse_ids_are_stable_and_default_to_the_request() -> None:
    ev = completed(key_alias=None)
    a, b = render(ExportItem(ev, False)), render(ExportItem(ev, False))
    assert [e["id"] for e in a] == [e["id"] for e in b]
    trace, gen = _bodies(a)
    assert trace["id"] == ev.request_id
    assert gen["name"] == "litellm-acompletion"
    other = render(ExportItem(completed(), False))
    assert {e["id"] for e in other}.isdisjoint({e["id"] for e in a})


def test_langfuse_existing_trace_is_not_renamed() -> None:
    ev = completed(
        metadata={
            "existing_trace_id": "t-old",
            "trace_name": "new-name",
            "update_trace_keys": ["output", "trace_user_id"],
            "trace_user_id": "u9",
        }
    )
    trace, gen = _bodies(render(ExportItem(ev, False)))
    assert trace == {
        "id": "t-old",
        "output": {"role": "assistant", "content": REPLY},
        "userId": "u9",
    }
    assert gen["traceId"] == "t-old"


def test_langfuse_failure_is_an_error_observation() -> None:
    trace, gen = _bodies(render(ExportItem(failed("t"), False)))
    assert gen["level"] == "ERROR"
    assert gen["statusMessage"] == "RateLimitError: upstream said 429: slow down"
    assert "output" not in gen
    assert "output" not in trace


def test_langfuse_redacted() -> None:
    ev = redact(completed())
    out = json.dumps(render(ExportItem(ev, True)))
    assert PROMPT not in out
    assert REPLY not in out
    assert "be brief" not in out
    trace, gen = _bodies(json.loads(out))
    assert gen["input"] == gen["output"] == trace["input"] == "redacted-by-litellm"


def _span(items: list[ExportItem], capture: bool = True) -> tuple[Span, dict[str, Any]]:
    req = build_request(items, "svc", capture)
    (rs,) = req.resource_spans
    assert {a.key: attr_value(a.value) for a in rs.resource.attributes}["service.name"] == "svc"
    span = rs.scope_spans[0].spans[0]
    return span, {a.key: attr_value(a.value) for a in span.attributes}


def test_otel_span_follows_genai_semconv() -> None:
    ev = completed(
        "team-a",
        "h",
        session_id="conv-1",
        key_alias="k-alias",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )
    span, attrs = _span([ExportItem(ev, False)])
    assert span.name == "chat gpt-4o"
    assert span.kind == Span.SpanKind.SPAN_KIND_CLIENT
    assert span.trace_id.hex() == "0af7651916cd43dd8448eb211c80319c"
    assert span.parent_span_id.hex() == "b7ad6b7169203331"
    assert span.start_time_unix_nano == int(ev.start_time.timestamp() * 1e6) * 1000
    assert span.end_time_unix_nano - span.start_time_unix_nano == 850_000_000
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.request.model"] == "gpt-4o"
    assert attrs["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert attrs["gen_ai.response.id"] == ev.response_id
    assert attrs["gen_ai.response.finish_reasons"] == ["stop"]
    assert attrs["gen_ai.usage.input_tokens"] == 9
    assert attrs["gen_ai.usage.output_tokens"] == 8
    assert attrs["gen_ai.conversation.id"] == "conv-1"
    assert attrs["gen_ai.request.temperature"] == 0.2
    assert attrs["gen_ai.request.max_tokens"] == 64
    assert attrs["server.address"] == "api.openai.com"
    assert attrs["server.port"] == 443
    assert attrs["tollgate.cost.usd"] == pytest.approx(0.000123)
    assert attrs["tollgate.key.alias"] == "k-alias"
    assert attrs["tollgate.team.id"] == "team-a"
    messages = json.loads(attrs["gen_ai.input.messages"])
    assert messages[1] == {"role": "user", "parts": [{"type": "text", "content": PROMPT}]}
    out = json.loads(attrs["gen_ai.output.messages"])
    assert out == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": REPLY}],
            "finish_reason": "stop",
        }
    ]
    again, _ = _span([ExportItem(ev, False)])
    assert again.span_id == span.span_id  # redelivery is the same span


def test_otel_failure_and_no_traceparent() -> None:
    ev = failed("t")
    span, attrs = _span([ExportItem(ev, False)])
    assert span.status.code == Status.STATUS_CODE_ERROR
    assert "slow down" in span.status.message
    assert attrs["error.type"] == "RateLimitError"
    assert span.parent_span_id == b""
    assert len(span.trace_id) == 16
    assert any(span.trace_id)


def test_otel_content_never_when_redacted_or_not_captured() -> None:
    ev = completed()
    for item, capture in ((ExportItem(redact(ev), True), True), (ExportItem(ev, False), False)):
        req = build_request([item], "svc", capture)
        raw = req.SerializeToString()
        assert PROMPT.encode() not in raw
        assert REPLY.encode() not in raw
        _, attrs = _span([item], capture)
        assert "gen_ai.input.messages" not in attrs


def _dest(sink: str, **options: Any) -> Destination:
    return Destination(sink, f"{sink}:x", f"{sink} test", options)  # type: ignore[arg-type]


async def test_webhook_signs_the_body() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        sink = WebhookSink(client)
        ev = completed()
        await sink.send(
            _dest("webhook", name="hook", url="http://h/x", secret="s3", headers={"x-extra": "1"}),
            [ExportItem(ev, False)],
        )
    (req,) = seen
    body = req.content
    assert (
        req.headers["x-tollgate-signature"]
        == "sha256=" + hmac.new(b"s3", body, hashlib.sha256).hexdigest()
    )
    assert req.headers["x-tollgate-signature"] == sign("s3", body)
    assert req.headers["x-extra"] == "1"
    payload = json.loads(body)
    assert payload["type"] == "tollgate.llm_events"
    assert payload["destination"] == "hook"
    (doc,) = payload["events"]
    assert doc["event_id"] == ev.event_id
    assert doc["event_type"] == "llm.request.completed.v1"
    assert doc["content_redacted"] is False
    assert doc["spend"] == "0.000123"


def test_webhook_documents_are_each_events_json_with_type_and_redaction() -> None:
    """The body is written in one pass from each event's own JSON; decoded, every document is
    the event as `model_dump(mode="json")` gives it plus the two keys, for completed and
    failed calls, redacted or not, with non-ASCII text, money and times."""
    from datetime import UTC, datetime
    from decimal import Decimal

    ev = completed(spend=Decimal("0.000000123456789"), user='Zoë 张三 "quoted"')
    items = [ExportItem(ev, False), ExportItem(redact(ev), True), ExportItem(failed("t"), False)]
    payload = json.loads(render_webhook("hook", items, datetime(2026, 12, 1, tzinfo=UTC)))
    assert payload["sent_at"] == "2026-12-01T00:00:00+00:00"
    assert payload["events"] == [
        {
            **i.event.model_dump(mode="json"),
            "event_type": i.event.event_type,
            "content_redacted": i.redacted,
        }
        for i in items
    ]
    assert payload["events"][0]["spend"] == "0.000000123456789"


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, RetryableError), (429, RetryableError), (401, PermanentError), (404, PermanentError)],
)
async def test_http_status_decides_retry(status: int, error: type[Exception]) -> None:
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(status))
    ) as client:
        with pytest.raises(error):
            await WebhookSink(client).send(
                _dest("webhook", name="h", url="http://h/x", secret=None, headers={}),
                [ExportItem(completed(), False)],
            )


async def test_langfuse_partial_rejection_and_server_errors() -> None:
    answers: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        batch = json.loads(request.content)["batch"]
        assert request.headers["authorization"].startswith("Basic ")
        answers.append({"batch": batch})
        first = batch[0]["id"]
        status = 400 if len(answers) == 1 else 500
        return httpx.Response(
            207,
            json={"successes": [], "errors": [{"id": first, "status": status, "message": "bad"}]},
        )

    dest = _dest("langfuse", host="http://lf", public_key="p", secret_key="s")
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        sink = LangfuseSink(client)
        items = [ExportItem(completed(), False), ExportItem(completed(), False)]
        result = await sink.send(dest, items)
        assert list(result.rejected) == [0]
        with pytest.raises(RetryableError):
            await sink.send(dest, items)
    assert str(answers[0]["batch"][0]["timestamp"]).endswith("Z")
