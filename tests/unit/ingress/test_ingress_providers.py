"""Provider adapters as pure translations: chat completions to each wire format and back,
streams to chunks, the registry, and prices of cached and cache-written tokens."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest

from tollgate_ingress.pricing import cost_of
from tollgate_ingress.routing import Deployment, deployments_from
from tollgate_ingress.upstream import (
    OPENAI_COMPATIBLE,
    adapter_for,
    adapter_of,
    anthropic,
    bedrock,
    gemini,
)
from tollgate_ingress.upstream.openai import UpstreamError, UpstreamUnreachableError
from tollgate_ingress.usage import StreamAccumulator
from tollgate_shared.config import LitellmParams, ModelEntry

pytestmark = pytest.mark.unit

CHAT: dict[str, Any] = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "f", "arguments": '{"x": 1}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": '{"ok": true}'},
    ],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "tool_choice": "required",
    "max_tokens": 99,
    "temperature": 0.5,
    "top_p": 0.9,
    "stop": "END",
}  # fmt: skip


def dep(model: str, **extra: Any) -> Deployment:
    params = LitellmParams.model_validate({"model": model, **extra})
    return Deployment("m", "m-1", params, {}, adapter_for(params.provider))


def test_registry_picks_by_prefix_when_deployments_are_built() -> None:
    entries = [
        ModelEntry.model_validate({"model_name": n, "litellm_params": {"model": m}})
        for n, m in [("a", "anthropic/claude"), ("o", "openai/gpt-4o"), ("v", "hosted_vllm/x")]
    ]
    groups = deployments_from(entries, [], adapter_for)
    assert adapter_of(groups["a"][0]) is anthropic.ADAPTER
    assert adapter_of(groups["o"][0]) is OPENAI_COMPATIBLE
    assert adapter_of(groups["v"][0]) is OPENAI_COMPATIBLE
    assert adapter_of(deployments_from(entries, [])["a"][0]) is OPENAI_COMPATIBLE


def test_anthropic_request_and_answer() -> None:
    body = anthropic.request_body("claude", CHAT)
    assert body["system"] == [{"type": "text", "text": "Be brief."}]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][0]["content"][1]["source"] == {
        "type": "base64", "media_type": "image/png", "data": "AAAA"}  # fmt: skip
    assert body["messages"][1]["content"][0] == {
        "type": "tool_use", "id": "c1", "name": "f", "input": {"x": 1}}  # fmt: skip
    assert body["messages"][2]["content"][0]["type"] == "tool_result"
    assert body["tool_choice"] == {"type": "any"}
    assert body["tools"][0]["input_schema"] == {"type": "object"}
    assert (body["max_tokens"], body["stop_sequences"]) == (99, ["END"])
    assert (
        anthropic.request_body("c", {"messages": [{"role": "user", "content": "x"}]})["max_tokens"]
        == anthropic.DEFAULT_MAX_TOKENS
    )
    out = anthropic.response_of(
        {
            "id": "msg_1", "model": "claude", "stop_reason": "tool_use",
            "content": [{"type": "text", "text": "hi"},
                        {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}],
            "usage": {"input_tokens": 10, "output_tokens": 3,
                      "cache_read_input_tokens": 4, "cache_creation_input_tokens": 2},
        },
        json_mode=False,
    )  # fmt: skip
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == '{"a":1}'
    assert out["usage"]["prompt_tokens"] == 16
    assert out["usage"]["prompt_tokens_details"] == {"cached_tokens": 4, "cache_creation_tokens": 2}


def test_anthropic_stream_to_chunks_and_early_end() -> None:
    t = anthropic.MessagesTranslator("claude", json_mode=False)
    events = [
        {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 5}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_start", "index": 1,
         "content_block": {"type": "tool_use", "id": "t", "name": "f"}},
        {"type": "content_block_delta", "index": 1,
         "delta": {"type": "input_json_delta", "partial_json": '{"a"'}},
        {"type": "content_block_delta", "index": 1,
         "delta": {"type": "input_json_delta", "partial_json": ": 1}"}},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
         "usage": {"output_tokens": 7}},
        {"type": "message_stop"},
    ]  # fmt: skip
    acc = StreamAccumulator()
    for e in events:
        for chunk in t.feed(e):
            acc.feed(chunk)
    t.end()
    msg = acc.response()["choices"][0]
    assert msg["message"]["content"] == "Hi"
    assert msg["message"]["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"a": 1}'}
    assert msg["finish_reason"] == "tool_calls"
    assert acc.usage is not None
    assert (acc.usage.prompt_tokens, acc.usage.completion_tokens) == (
        5,
        7,
    )
    cut = anthropic.MessagesTranslator("claude", json_mode=False)
    cut.feed(events[0])
    with pytest.raises(UpstreamUnreachableError):
        cut.end()
    with pytest.raises(UpstreamError) as err:
        cut.feed({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})
    assert err.value.status == 529


def test_gemini_request_and_answer() -> None:
    body = gemini.request_body({**CHAT, "response_format": {"type": "json_schema", "json_schema": {
        "schema": {"type": "object", "additionalProperties": False}}}})  # fmt: skip
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["contents"][1]["parts"][0] == {"functionCall": {"name": "f", "args": {"x": 1}}}
    assert body["contents"][2]["parts"][0]["functionResponse"] == {
        "name": "f", "response": {"ok": True}}  # fmt: skip
    cfg = body["generationConfig"]
    assert cfg["responseSchema"] == {"type": "object"}
    assert (cfg["maxOutputTokens"], cfg["stopSequences"], cfg["topP"]) == (99, ["END"], 0.9)
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    out = gemini.response_of(
        {"candidates": [{"content": {"parts": [{"text": "thinking", "thought": True},
                                               {"text": "hi"}]}, "finishReason": "MAX_TOKENS"}],
         "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 2,
                           "thoughtsTokenCount": 5, "cachedContentTokenCount": 3}},
        "gemini-2.5-flash",
    )  # fmt: skip
    assert out["choices"][0]["message"] == {
        "role": "assistant", "content": "hi", "reasoning_content": "thinking"}  # fmt: skip
    assert out["choices"][0]["finish_reason"] == "length"
    u = out["usage"]
    assert (u["prompt_tokens"], u["completion_tokens"]) == (8, 7)
    assert u["completion_tokens_details"]["reasoning_tokens"] == 5
    assert u["prompt_tokens_details"]["cached_tokens"] == 3


def test_bedrock_request_answer_and_event_stream() -> None:
    body = bedrock.request_body(CHAT)
    assert body["system"] == [{"text": "Be brief."}]
    assert body["messages"][0]["content"][1] == {
        "image": {"format": "png", "source": {"bytes": "AAAA"}}}  # fmt: skip
    assert body["messages"][2]["content"][0]["toolResult"]["toolUseId"] == "c1"
    assert body["inferenceConfig"] == {
        "maxTokens": 99, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]}  # fmt: skip
    assert body["toolConfig"]["toolChoice"] == {"any": {}}
    with pytest.raises(UpstreamError) as err:
        bedrock.request_body({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]})  # fmt: skip
    assert err.value.status == 400

    from support.fake_providers.bedrock import encode_message, event

    raw = b"".join(
        [
            event("messageStart", {"role": "assistant"}),
            event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
            event("messageStop", {"stopReason": "end_turn"}),
            event("metadata", {"usage": {"inputTokens": 3, "outputTokens": 1}}),
            encode_message(
                {":message-type": "exception", ":exception-type": "throttlingException"},
                b'{"message": "slow down"}',
            ),
        ]
    )

    async def decode() -> list[Any]:
        resp = httpx.Response(200, content=raw)
        return [e async for e in bedrock.ADAPTER.events(resp)]

    with pytest.raises(UpstreamError) as err:
        asyncio.run(decode())
    assert err.value.status == 429
    assert err.value.message == "slow down"


async def test_bedrock_signs_with_sigv4() -> None:
    d = dep(
        "bedrock/converse/anthropic.claude-3-5-haiku-20241022-v1:0",
        aws_access_key_id="AKID", aws_secret_access_key="s", aws_region_name="eu-west-1",
    )  # fmt: skip
    out = await bedrock.ADAPTER.prepare(d, {"messages": [{"role": "user", "content": "x"}]}, True)
    assert out.url == (
        "https://bedrock-runtime.eu-west-1.amazonaws.com/model/"
        "anthropic.claude-3-5-haiku-20241022-v1:0/converse-stream"
    )
    assert out.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKID/")
    assert "/eu-west-1/bedrock/aws4_request" in out.headers["Authorization"]
    assert orjson.loads(out.content) == {"messages": [{"role": "user", "content": [{"text": "x"}]}]}


async def test_azure_url_and_auth() -> None:
    d = dep("azure/prod-gpt4o", api_base="https://r.openai.azure.com", api_key="k")
    out = await adapter_of(d).prepare(d, {"messages": []}, False)  # type: ignore[attr-defined]
    assert out.url == (
        "https://r.openai.azure.com/openai/deployments/prod-gpt4o/chat/completions"
        "?api-version=2024-10-21"
    )
    assert out.headers["api-key"] == "k"
    d = dep("azure/x", api_base="https://r", azure_ad_token="tok", api_version="2025-01-01")
    out = await adapter_of(d).prepare(d, {"messages": []}, False)  # type: ignore[attr-defined]
    assert out.headers["authorization"] == "Bearer tok"
    assert "2025-01-01" in out.url


def test_cache_read_and_write_prices() -> None:
    params = LitellmParams.model_validate(
        {
            "model": "anthropic/claude",
            "input_cost_per_token": "0.000003",
            "output_cost_per_token": "0.000015",
            "cache_read_input_token_cost": "0.0000003",
            "cache_creation_input_token_cost": "0.00000375",
        }
    )
    cost = cost_of(params, 100, 10, cached_tokens=40, cache_write_tokens=20)
    assert cost.spend == (
        40 * Decimal("0.000003") + 40 * Decimal("0.0000003") + 20 * Decimal("0.00000375")
        + 10 * Decimal("0.000015")
    )  # fmt: skip
    catalogue = LitellmParams.model_validate({"model": "anthropic/claude-sonnet-4-5"})
    plain = cost_of(catalogue, 1000, 100).spend
    assert cost_of(catalogue, 1000, 100, cache_write_tokens=500).spend > plain
    assert cost_of(catalogue, 1000, 100, cached_tokens=500).spend < plain
