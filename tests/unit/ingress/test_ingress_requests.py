"""Request parsing, usage accounting and stream handling (pure logic)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest

from tollgate_ingress.parsing import (
    MAX_DEPTH,
    MAX_METADATA_BYTES,
    BadRequestError,
    parse_chat_request,
    parse_embedding_request,
)
from tollgate_ingress.pricing import cost_of
from tollgate_ingress.service import call_type_of
from tollgate_ingress.upstream.mock import mock_chunks, mock_completion
from tollgate_ingress.usage import StreamAccumulator, strip_unrequested_usage, usage_from
from tollgate_shared.config import LitellmParams

MSG = [{"role": "user", "content": "hi there"}]


def body(**kw: object) -> bytes:
    return orjson.dumps({"model": "m", "messages": MSG, **kw})


def test_session_id_sources_in_priority_order() -> None:
    hdr = {"x-litellm-session-id": "from-header"}
    assert parse_chat_request(body(), hdr).session_id == "from-header"
    assert parse_chat_request(body(metadata={"session_id": "meta"}), hdr).session_id == "meta"
    both = body(litellm_session_id="body", metadata={"session_id": "meta"})
    assert parse_chat_request(both, hdr).session_id == "body"


def test_gateway_fields_are_not_forwarded_and_tags_are_merged() -> None:
    req = parse_chat_request(
        body(
            metadata={"tags": ["a"], "generation_name": "g", "trace_id": "t1"},
            tags=["b"],
            litellm_session_id="s",
            temperature=0.2,
            user="end-1",
        ),
        {"x-litellm-tags": "c, a"},
    )
    assert req.tags == ["a", "b", "c"]
    assert req.trace_id == "t1"
    assert req.end_user == "end-1"
    assert req.model_parameters == {"temperature": 0.2}
    assert "metadata" not in req.upstream_body
    assert "litellm_session_id" not in req.upstream_body
    assert req.upstream_body["user"] == "end-1"


def test_streaming_always_asks_upstream_for_usage() -> None:
    req = parse_chat_request(body(stream=True), {})
    assert req.upstream_body["stream_options"] == {"include_usage": True}
    assert req.client_wants_usage is False
    asked = parse_chat_request(body(stream=True, stream_options={"include_usage": True}), {})
    assert asked.client_wants_usage is True


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b"not json", None),
        (b"[1, 2]", None),
        (orjson.dumps({"messages": MSG}), "model"),
        (orjson.dumps({"model": 3, "messages": MSG}), "model"),
        (orjson.dumps({"model": "m"}), "messages"),
        (orjson.dumps({"model": "m", "messages": []}), "messages"),
        (orjson.dumps({"model": "m", "messages": ["x"]}), "messages[0]"),
        (body(stream="yes"), "stream"),
        (body(metadata=[1]), "metadata"),
        (body(metadata={"tags": "x"}, tags=[1]), "tags"),
        (body(user=5), "user"),
        (body(stream_options=3), "stream_options"),
    ],
)
def test_bad_requests_name_the_parameter(raw: bytes, param: str | None) -> None:
    with pytest.raises(BadRequestError) as info:
        parse_chat_request(raw, {})
    assert info.value.param == param


def test_usage_details_are_read() -> None:
    u = usage_from(
        {
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": 2},
        }
    )
    assert (u.prompt_tokens, u.completion_tokens, u.total_tokens) == (10, 5, 15)
    assert (u.cached_tokens, u.reasoning_tokens) == (4, 2)
    assert usage_from(None).total_tokens == 0
    assert usage_from({"prompt_tokens": -3}).prompt_tokens == 0


def test_stream_accumulator_rebuilds_the_response() -> None:
    full = mock_completion("m", "one two three", MSG, "id1", 1)
    acc = StreamAccumulator()
    for c in mock_chunks(full):
        acc.feed(c)
    resp = acc.response()
    assert resp["choices"][0]["message"]["content"] == "one two three"
    assert resp["choices"][0]["finish_reason"] == "stop"
    assert acc.usage is not None
    assert acc.usage.total_tokens == full["usage"]["total_tokens"]


def test_unrequested_usage_is_stripped() -> None:
    assert strip_unrequested_usage({"choices": [], "usage": {"x": 1}}) is None
    assert strip_unrequested_usage({"choices": [{"i": 0}], "usage": None}) == {
        "choices": [{"i": 0}]
    }
    assert strip_unrequested_usage({"choices": [1]}) == {"choices": [1]}


def test_streamed_and_plain_calls_cost_the_same() -> None:
    full = mock_completion("m", "a reply of several words", MSG, "id", 1)
    acc = StreamAccumulator()
    for c in mock_chunks(full):
        acc.feed(c)
    params = LitellmParams(model="openai/gpt-4o")
    plain = usage_from(full["usage"])
    assert acc.usage == plain
    assert cost_of(params, plain.prompt_tokens, plain.completion_tokens) == cost_of(
        params, acc.usage.prompt_tokens, acc.usage.completion_tokens
    )


def test_config_prices_win_and_are_decimal() -> None:
    params = LitellmParams(
        model="openai/x",
        input_cost_per_token=Decimal("0.000001"),
        output_cost_per_token=Decimal("0.000002"),
    )
    c = cost_of(params, 1000, 500)
    assert c.spend == Decimal("0.002")
    assert c.source == "config"


def test_catalogue_price_for_known_model() -> None:
    c = cost_of(LitellmParams(model="openai/gpt-4o"), 1000, 100)
    assert c.source == "genai-prices"
    assert c.spend > 0
    assert isinstance(c.spend, Decimal)


def test_unknown_model_costs_zero_with_a_warning() -> None:
    c = cost_of(LitellmParams(model="openai/no-such-model-xyz"), 1000, 100)
    assert c.spend == 0
    assert c.warning is not None
    assert "no-such-model-xyz" in c.warning


# --- bounds: a body the consumers could not decode is refused, naming the field -----------


def _nest(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"n": value}
    return value


def _chat(**extra: Any) -> bytes:
    body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}], **extra}
    return orjson.dumps(body)


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        # 220 levels: orjson reads it, every consumer's parser (200 levels) would refuse the event.
        ({"metadata": _nest(220)}, "metadata"),
        ({"metadata": {"a": _nest(64)}}, "metadata"),
        ({"tools": [{"type": "function", "function": {"parameters": _nest(100)}}]}, "tools"),
        ({"response_format": _nest(70)}, "response_format"),
    ],
)
def test_a_body_nested_too_deep_is_refused_naming_the_field(
    extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(BadRequestError, match=f"{param} is nested deeper than") as info:
        parse_chat_request(_chat(**extra), {})
    assert info.value.param == param


def test_deep_message_content_is_refused_as_messages() -> None:
    raw = orjson.dumps({"model": "demo", "messages": [{"role": "user", "content": [_nest(80)]}]})
    with pytest.raises(BadRequestError) as info:
        parse_chat_request(raw, {})
    assert info.value.param == "messages"


def test_nesting_within_the_limit_is_accepted() -> None:
    req = parse_chat_request(_chat(metadata={"deep": _nest(MAX_DEPTH - 3)}), {})
    assert req.metadata["deep"]["n"]["n"]


def test_metadata_larger_than_the_limit_is_refused() -> None:
    raw = _chat(metadata={"blob": "x" * (MAX_METADATA_BYTES + 10)})
    with pytest.raises(BadRequestError, match="metadata is larger than") as info:
        parse_chat_request(raw, {})
    assert info.value.param == "metadata"


def test_embeddings_are_bounded_too() -> None:
    raw = orjson.dumps({"model": "demo", "input": "x", "metadata": _nest(100)})
    with pytest.raises(BadRequestError) as info:
        parse_embedding_request(raw, {})
    assert info.value.param == "metadata"


@pytest.mark.parametrize(
    ("path", "call_type"),
    [
        ("/v1/chat/completions", "acompletion"),
        ("/chat/completions", "acompletion"),
        ("/v1/embeddings", "aembedding"),
        ("/v1/responses", "aresponses"),
        ("/responses", "aresponses"),
    ],
)
def test_a_refusal_before_parsing_keeps_the_routes_call_type(path: str, call_type: str) -> None:
    assert call_type_of(path) == call_type


@pytest.mark.parametrize(
    "raw",
    [
        {
            "prompt_tokens": 100,
            "completion_tokens": 5,
            "prompt_tokens_details": {"cache_creation_tokens": 40},
        },
        {"prompt_tokens": 100, "completion_tokens": 5, "cache_creation_input_tokens": 40},
    ],
)
def test_cache_writes_are_read_and_priced_apart(raw: dict[str, Any]) -> None:
    usage = usage_from(raw)
    assert usage.cache_creation_tokens == 40
    params = LitellmParams(
        model="anthropic/claude-x",
        input_cost_per_token=Decimal("0.000003"),
        output_cost_per_token=Decimal("0.000015"),
        cache_creation_input_token_cost=Decimal("0.00000375"),
    )
    cost = cost_of(
        params, usage.prompt_tokens, usage.completion_tokens, 0, usage.cache_creation_tokens
    )
    assert cost.spend == 60 * Decimal("0.000003") + 40 * Decimal("0.00000375") + 5 * Decimal(
        "0.000015"
    )
