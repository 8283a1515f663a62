"""`/v1/messages` and `/v1/responses` through ingress as a real process, to one deployment per
provider. With the official `anthropic` SDK: an Anthropic deployment gets the Messages request as
it came and its answer and stream come back unchanged (usage read for cost and events); other
providers are bridged through their adapters; an overloaded (529) Anthropic deployment falls
back to an OpenAI-compatible one. With the `openai` SDK: the Responses API reaches every
provider through the same adapters, plain and streamed."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import anthropic
import httpx
import openai
import pytest
from nats.js import JetStreamContext

from support.configs import MASTER_KEY, write_config
from support.events import wait_for_events
from support.fake_providers import (
    ANTHROPIC_KEY,
    AZURE_KEY,
    PROVIDERS,
    FakeProviders,
    fake_providers,
    model_list,
)
from support.fake_upstream import FakeUpstream, fake_upstream
from support.processes import Service, start_service, stop_service
from tollgate_devstack.embedded import StackUrls, free_port

COMPLETED = "llm.request.completed.v1.>"
PRICES = {
    "input_cost_per_token": "0.000001",
    "output_cost_per_token": "0.000002",
    "cache_read_input_token_cost": "0.0000001",
    "cache_creation_input_token_cost": "0.00000125",
}
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture(scope="module")
def fakes() -> Iterator[FakeProviders]:
    with fake_providers() as fp:
        yield fp


@pytest.fixture(scope="module")
def openai_up() -> Iterator[FakeUpstream]:
    with fake_upstream(reply="fallback answer") as up:
        yield up


@pytest.fixture(scope="module")
def ingress(
    provisioned: StackUrls,
    fakes: FakeProviders,
    openai_up: FakeUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("ingress-messages")
    cfg = write_config(
        tmp / "config.yaml",
        model_list=model_list(fakes, openai_up.base_url, PRICES),
        router_settings={
            "num_retries": 0,
            "allowed_fails": 100,
            "fallbacks": [{"anthropic-overloaded": ["openai-backup"]}],
        },
    )
    env = {
        **provisioned.env(),
        "TOLLGATE_CONFIG": str(cfg),
        "TOLLGATE_SPOOL_PATH": str(tmp / "spool.sqlite3"),
    }
    svc = start_service("tollgate_ingress", free_port(), env, tmp)
    yield svc
    stop_service(svc)


@pytest.fixture
def client(ingress: Service) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=ingress.url, api_key=MASTER_KEY, max_retries=0)


@pytest.fixture(autouse=True)
def fresh(fakes: FakeProviders) -> Iterator[None]:
    fakes.reset()
    yield
    assert not fakes.problems, fakes.problems


def anthropic_cost(usage: Any) -> Decimal:
    """What Anthropic's usage costs at PRICES: fresh input, cache reads and writes, output."""
    return (
        usage.input_tokens * Decimal(PRICES["input_cost_per_token"])
        + (usage.cache_read_input_tokens or 0) * Decimal(PRICES["cache_read_input_token_cost"])
        + (usage.cache_creation_input_tokens or 0)
        * Decimal(PRICES["cache_creation_input_token_cost"])
        + usage.output_tokens * Decimal(PRICES["output_cost_per_token"])
    )


async def test_anthropic_deployment_passes_through_unchanged(
    client: anthropic.AsyncAnthropic, js: JetStreamContext, fakes: FakeProviders
) -> None:
    raw = await client.messages.with_raw_response.create(
        model="anthropic",
        max_tokens=64,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "say hello please"}],
        metadata={"user_id": "user-7"},
        extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"},
        extra_body={"litellm_session_id": "msg-native"},
    )
    msg = await raw.parse()
    assert msg.id == "msg_fake"  # Anthropic's own answer, not one rebuilt from chat
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == fakes.reply  # type: ignore[union-attr]
    assert (msg.usage.cache_read_input_tokens, msg.usage.cache_creation_input_tokens) == (2, 1)

    _, headers, sent = fakes.last("anthropic")
    assert headers["x-api-key"] == ANTHROPIC_KEY  # the deployment's key, never the caller's
    assert headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert sent == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "say hello please"}],
        "metadata": {"user_id": "user-7"},
    }

    cost = Decimal(raw.headers["x-litellm-response-cost"])
    assert cost == anthropic_cost(msg.usage)
    [(_, event)] = await wait_for_events(js, COMPLETED, {"session_id": "msg-native"})
    assert event["custom_llm_provider"] == "anthropic"
    assert Decimal(event["spend"]) == cost
    assert event["cached_tokens"] == 2
    assert event["prompt_tokens"] == msg.usage.input_tokens + 3


async def test_anthropic_stream_relayed_as_sent_and_costed_the_same(
    client: anthropic.AsyncAnthropic, js: JetStreamContext, fakes: FakeProviders
) -> None:
    kinds: list[str] = []
    async with client.messages.stream(
        model="anthropic",
        max_tokens=64,
        messages=[{"role": "user", "content": "say hello please"}],
        extra_body={"litellm_session_id": "msg-native-stream"},
    ) as stream:
        async for ev in stream:
            kinds.append(ev.type)
        final = await stream.get_final_message()
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert final.content[0].text == fakes.reply  # type: ignore[union-attr]
    _, _, sent = fakes.last("anthropic")
    assert sent["stream"] is True
    plain = await client.messages.create(
        model="anthropic", max_tokens=64, messages=[{"role": "user", "content": "say hello please"}]
    )
    [(_, event)] = await wait_for_events(js, COMPLETED, {"session_id": "msg-native-stream"})
    assert event["stream"] is True
    assert event["completion_tokens"] == plain.usage.output_tokens
    assert Decimal(event["spend"]) == anthropic_cost(plain.usage)


async def test_anthropic_stream_bytes_are_the_providers(ingress: Service) -> None:
    """The SDK hides keep-alives; on the wire the provider's own events arrive, ping included,
    with its message id (a bridged stream has neither)."""
    body = {"model": "anthropic", "max_tokens": 16, "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
    async with (
        httpx.AsyncClient(base_url=ingress.url, headers={"x-api-key": MASTER_KEY}) as http,
        http.stream("POST", "/v1/messages", json=body) as r,
    ):
        assert r.status_code == 200
        raw = b"".join([part async for part in r.aiter_bytes()])
    assert b'event: ping\ndata: {"type": "ping"}\n\n' in raw
    assert b'"id": "msg_fake"' in raw
    assert raw.endswith(b'event: message_stop\ndata: {"type": "message_stop"}\n\n')


@pytest.mark.parametrize("stream", [False, True])
async def test_tool_use_passes_through(
    client: anthropic.AsyncAnthropic, fakes: FakeProviders, stream: bool
) -> None:
    fakes.tool_call = ("get_weather", {"city": "Paris"})
    kwargs: dict[str, Any] = {
        "model": "anthropic",
        "max_tokens": 64,
        "tools": [WEATHER],
        "messages": [{"role": "user", "content": "weather in Paris?"}],
    }
    if stream:
        async with client.messages.stream(**kwargs) as s:
            msg = await s.get_final_message()
    else:
        msg = await client.messages.create(**kwargs)
    assert msg.stop_reason == "tool_use"
    [use] = [b for b in msg.content if b.type == "tool_use"]
    assert (use.id, use.name, use.input) == ("toolu_01", "get_weather", {"city": "Paris"})
    _, _, sent = fakes.last("anthropic")
    assert sent["tools"] == [WEATHER]


@pytest.mark.parametrize("stream", [False, True])
async def test_other_providers_are_bridged(
    client: anthropic.AsyncAnthropic, fakes: FakeProviders, stream: bool
) -> None:
    kwargs: dict[str, Any] = {
        "model": "gemini",
        "max_tokens": 64,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "say hello please"}],
    }
    if stream:
        async with client.messages.stream(**kwargs) as s:
            msg = await s.get_final_message()
    else:
        msg = await client.messages.create(**kwargs)
    assert msg.content[0].text == fakes.reply  # type: ignore[union-attr]
    assert msg.usage.output_tokens == len(fakes.reply.split()) + 3  # + the fake's thoughts
    _, _, sent = fakes.last("gemini")
    assert sent["systemInstruction"]["parts"][0]["text"] == "Be brief."


async def test_errors_come_back_in_anthropic_format(
    client: anthropic.AsyncAnthropic, fakes: FakeProviders
) -> None:
    fakes.fail["anthropic"] = 429
    with pytest.raises(anthropic.RateLimitError) as err:
        await client.messages.create(
            model="anthropic", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    assert err.value.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Overloaded"},
    }
    with pytest.raises(anthropic.BadRequestError):
        await client.messages.create(model="anthropic", max_tokens=5, messages=[])


async def test_overloaded_anthropic_falls_back_to_openai_compatible(
    client: anthropic.AsyncAnthropic, fakes: FakeProviders
) -> None:
    fakes.fail["anthropic"] = 529
    raw = await client.messages.with_raw_response.create(
        model="anthropic-overloaded",
        max_tokens=32,
        messages=[{"role": "user", "content": "hello"}],
    )
    assert (await raw.parse()).content[0].text == "fallback answer"  # type: ignore[union-attr]
    assert raw.headers["x-litellm-model-id"] == "openai-backup-1"


@pytest.mark.parametrize("model", PROVIDERS)
async def test_responses_reach_each_provider_through_its_adapter(
    ingress: Service, js: JetStreamContext, fakes: FakeProviders, model: str
) -> None:
    client = openai.AsyncOpenAI(base_url=f"{ingress.url}/v1", api_key=MASTER_KEY, max_retries=0)
    resp = await client.responses.create(
        model=model,
        input="say hello please",
        instructions="Be brief.",
        extra_body={"litellm_session_id": f"resp-{model}"},
    )
    assert resp.output_text == fakes.reply
    assert resp.usage is not None
    assert resp.usage.output_tokens > 0
    text = ""
    async with client.responses.stream(model=model, input="say hello please") as stream:
        async for ev in stream:
            if ev.type == "response.output_text.delta":
                text += ev.delta
        final = await stream.get_final_response()
    assert text == fakes.reply
    assert final.usage is not None
    assert final.usage.output_tokens == resp.usage.output_tokens
    [(_, event)] = await wait_for_events(js, COMPLETED, {"session_id": f"resp-{model}"})
    assert event["custom_llm_provider"] == model
    assert event["call_type"] == "aresponses"
    assert Decimal(event["spend"]) > 0
    if model == "azure":
        # Azure is bridged like the others: its own URL, api-key and api-version.
        path, headers, _ = fakes.last("azure")
        assert path.endswith("/chat/completions")
        assert headers["api-key"] == AZURE_KEY
