"""CPU each provider adapter adds per call: request translation plus answer translation
(plain) and plus stream translation (a 50-chunk answer), beside the OpenAI-compatible path's
own body encoding. `cd tests && python -m support.fake_providers.bench [N]`."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import orjson

from support.fake_providers import anthropic as fake_anthropic
from support.fake_providers import gemini as fake_gemini
from tollgate_ingress.routing import Deployment
from tollgate_ingress.upstream import adapter_for
from tollgate_shared.config import LitellmParams

BODY: dict[str, Any] = {
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is the weather in Paris and in Rome today?"},
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}],
    "max_tokens": 200,
    "temperature": 0.3,
}  # fmt: skip
REPLY = "word " * 49 + "end"

PARAMS = {
    "openai": {"model": "openai/gpt-4o", "api_key": "k"},
    "azure": {"model": "azure/gpt-4o", "api_base": "https://r.openai.azure.com", "api_key": "k"},
    "anthropic": {"model": "anthropic/claude-sonnet-4-5", "api_key": "k"},
    "gemini": {"model": "gemini/gemini-2.5-flash", "api_key": "k"},
    "bedrock": {"model": "bedrock/anthropic.claude-3-5-haiku-20241022-v1:0",
                "aws_access_key_id": "AKID", "aws_secret_access_key": "s"},
}  # fmt: skip


def answers(provider: str) -> tuple[dict[str, Any], list[Any]]:
    """The provider's plain answer and its stream events, as its fake would send them."""
    words = REPLY.split(" ")
    if provider == "anthropic":
        u = {"input_tokens": 20, "output_tokens": 50}
        plain = {"id": "m", "model": "c", "content": [{"type": "text", "text": REPLY}],
                 "stop_reason": "end_turn", "usage": u}  # fmt: skip
        events = [{"type": "message_start", "message": {"id": "m", "usage": u}}]
        events += [{"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": w}} for w in words]  # fmt: skip
        events += [{"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": u},
                   {"type": "message_stop"}]  # fmt: skip
        return plain, events
    if provider == "gemini":
        data = fake_gemini.answer(fake_gemini_state(), {"contents": []}, "g")
        events = [{"candidates": [{"content": {"parts": [{"text": w}]}}]} for w in words[:-1]]
        events.append(data)
        return data, events
    if provider == "bedrock":
        u = {"inputTokens": 20, "outputTokens": 50}
        plain = {"output": {"message": {"content": [{"text": REPLY}]}}, "stopReason": "end_turn",
                 "usage": u}  # fmt: skip
        events = [("messageStart", {"role": "assistant"})]
        events += [("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": w}})
                   for w in words]  # fmt: skip
        events += [("messageStop", {"stopReason": "end_turn"}), ("metadata", {"usage": u})]
        return plain, events
    delta = {"index": 0, "delta": {"content": "w"}, "finish_reason": None}
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [delta]}  # fmt: skip
    plain = {"id": "c", "choices": [{"message": {"content": REPLY}}], "usage": {}}
    return plain, [chunk] * 50


def fake_gemini_state() -> Any:
    from support.fake_providers import FakeProviders

    return FakeProviders(reply=REPLY)


def per_call_us(n: int, fn: Any) -> float:
    fn()
    t0 = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t0) / n * 1e6


def measure(provider: str, raw: dict[str, Any], n: int) -> tuple[float, float, float]:
    """Microseconds of CPU per call: request, plain answer, 50-chunk stream."""
    params = LitellmParams.model_validate(raw)
    dep = Deployment("m", "m-1", params, {}, adapter_for(params.provider))
    adapter: Any = dep.adapter
    plain, events = answers(provider)
    if provider == "openai":
        # What the OpenAI-compatible path does to a body: re-encode it with the model.
        def request() -> None:
            orjson.dumps({**BODY, "model": params.upstream_model})

        def answer() -> None:
            orjson.loads(orjson.dumps(plain))

        def stream() -> None:
            for e in events:
                orjson.loads(orjson.dumps(e))
    else:
        loop = asyncio.new_event_loop()

        def request() -> None:
            loop.run_until_complete(adapter.prepare(dep, BODY, False))

        def answer() -> None:
            adapter.response(plain, dep, BODY)

        def stream() -> None:
            t = adapter.translator(dep, BODY)
            for e in events:
                t.feed(e)
            t.end()

    return per_call_us(n, request), per_call_us(n, answer), per_call_us(max(1, n // 10), stream)


def main(n: int) -> None:
    _ = fake_anthropic  # the fakes' formats are the ones measured
    print(f"{'provider':<10} {'request us':>11} {'plain us':>9} {'stream us':>10}  ({n} calls)")
    for provider, raw in PARAMS.items():
        req_us, plain_us, stream_us = measure(provider, raw, n)
        print(f"{provider:<10} {req_us:>11.1f} {plain_us:>9.1f} {stream_us:>10.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
