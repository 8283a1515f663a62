"""Ingress as a real process forwarding to one deployment per provider, each a fake speaking
that provider's wire format, driven by the official `openai` SDK: the same plain, streamed,
tool-call, image and JSON-mode calls answer alike; errors keep the provider's status; an
Anthropic 529 falls back to an OpenAI-compatible deployment; events carry provider and cost."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import openai
import pytest
from nats.js import JetStreamContext

from support.configs import MASTER_KEY, write_config
from support.events import wait_for_events
from support.fake_providers import (
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
PRICE_IN, PRICE_OUT, PRICE_CACHE_READ = "0.000001", "0.000002", "0.0000001"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
PIXEL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8"
    "z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@pytest.fixture(scope="module")
def fakes() -> Iterator[FakeProviders]:
    with fake_providers() as fp:
        yield fp


@pytest.fixture(scope="module")
def openai_up() -> Iterator[FakeUpstream]:
    with fake_upstream(reply="fallback answer") as up:
        yield up


def _prices() -> dict[str, str]:
    return {
        "input_cost_per_token": PRICE_IN,
        "output_cost_per_token": PRICE_OUT,
        "cache_read_input_token_cost": PRICE_CACHE_READ,
    }


@pytest.fixture(scope="module")
def ingress(
    provisioned: StackUrls,
    fakes: FakeProviders,
    openai_up: FakeUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("ingress-providers")
    cfg = write_config(
        tmp / "config.yaml",
        model_list=model_list(fakes, openai_up.base_url, _prices()),
        router_settings={
            "num_retries": 0,
            "allowed_fails": 100,
            "fallbacks": [{"anthropic-overloaded": ["openai-backup"]}],
        },
    )
    svc = start_service(
        "tollgate_ingress",
        free_port(),
        {
            **provisioned.env(),
            "TOLLGATE_CONFIG": str(cfg),
            "TOLLGATE_SPOOL_PATH": str(tmp / "spool.sqlite3"),
        },
        tmp,
    )
    yield svc
    stop_service(svc)


@pytest.fixture
def client(ingress: Service) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{ingress.url}/v1", api_key=MASTER_KEY, max_retries=0)


@pytest.fixture(autouse=True)
def fresh(fakes: FakeProviders) -> Iterator[None]:
    fakes.reset()
    yield
    assert not fakes.problems, fakes.problems


def expected_cost(usage: Any) -> Decimal:
    cached = (usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0) or 0
    return (
        (usage.prompt_tokens - cached) * Decimal(PRICE_IN)
        + cached * Decimal(PRICE_CACHE_READ)
        + usage.completion_tokens * Decimal(PRICE_OUT)
    )


@pytest.mark.parametrize("model", PROVIDERS)
async def test_plain_chat(
    client: openai.AsyncOpenAI, js: JetStreamContext, fakes: FakeProviders, model: str
) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model=model,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "say hello please"},
        ],
        max_tokens=50,
        temperature=0.2,
        stop=["END"],
        extra_body={"metadata": {"session_id": f"prov-{model}"}},
    )
    resp = raw.parse()
    assert resp.choices[0].message.content == fakes.reply
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert resp.usage.completion_tokens >= 5
    cost = Decimal(raw.headers["x-litellm-response-cost"])
    assert cost == expected_cost(resp.usage)
    events = await wait_for_events(js, COMPLETED, {"session_id": f"prov-{model}"})
    assert events, "no completed event"
    event = events[-1][1]
    assert event["custom_llm_provider"] == model
    assert Decimal(event["spend"]) == cost


@pytest.mark.parametrize("model", PROVIDERS)
async def test_stream_costs_the_same(
    client: openai.AsyncOpenAI, fakes: FakeProviders, model: str
) -> None:
    messages = [{"role": "user", "content": "say hello please"}]
    plain = await client.chat.completions.with_raw_response.create(model=model, messages=messages)
    stream = await client.chat.completions.create(
        model=model, messages=messages, stream=True, stream_options={"include_usage": True}
    )
    text, finish, usage = "", None, None
    async for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            text += c.delta.content or ""
            finish = c.finish_reason or finish
    assert text == fakes.reply
    assert finish == "stop"
    assert usage is not None
    assert usage.model_dump() == plain.parse().usage.model_dump()  # type: ignore[union-attr]
    assert expected_cost(usage) == Decimal(plain.headers["x-litellm-response-cost"])


@pytest.mark.parametrize("model", PROVIDERS)
@pytest.mark.parametrize("stream", [False, True])
async def test_tool_call_round_trip(
    client: openai.AsyncOpenAI, fakes: FakeProviders, model: str, stream: bool
) -> None:
    fakes.tool_call = ("get_weather", {"city": "Paris"})
    messages: list[Any] = [{"role": "user", "content": "weather in Paris?"}]
    kwargs: dict[str, Any] = {"model": model, "messages": messages, "tools": TOOLS}
    if stream:
        calls: dict[int, dict[str, str]] = {}
        finish = None
        async for chunk in await client.chat.completions.create(**kwargs, stream=True):
            for c in chunk.choices:
                finish = c.finish_reason or finish
                for tc in c.delta.tool_calls or ():
                    slot = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                    slot["id"] = tc.id or slot["id"]
                    if tc.function:
                        slot["name"] += tc.function.name or ""
                        slot["arguments"] += tc.function.arguments or ""
        assert finish == "tool_calls"
        call = calls[0]
    else:
        resp = await client.chat.completions.create(**kwargs)
        assert resp.choices[0].finish_reason == "tool_calls"
        tc = resp.choices[0].message.tool_calls[0]  # type: ignore[index]
        call = {"id": tc.id, "name": tc.function.name, "arguments": tc.function.arguments}  # type: ignore[union-attr]
    assert call["name"] == "get_weather"
    assert json.loads(call["arguments"]) == {"city": "Paris"}
    # The result goes back; the provider must receive it in its own shape.
    fakes.tool_call = None
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call["id"], "type": "function",
             "function": {"name": call["name"], "arguments": call["arguments"]}}]},
        {"role": "tool", "tool_call_id": call["id"], "content": '{"temp_c": 21}'},
    ]  # fmt: skip
    resp = await client.chat.completions.create(model=model, messages=messages, tools=TOOLS)
    assert resp.choices[0].message.content == fakes.reply


async def test_request_shapes_reach_each_provider(
    client: openai.AsyncOpenAI, fakes: FakeProviders
) -> None:
    """Images (base64), JSON mode: what each provider receives is its own format."""
    image = [{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": PIXEL}}]}]  # fmt: skip
    for model in PROVIDERS:
        await client.chat.completions.create(model=model, messages=image)  # type: ignore[arg-type]
    _, _, body = fakes.last("anthropic")
    assert body["messages"][0]["content"][1]["source"]["type"] == "base64"
    _, _, body = fakes.last("gemini")
    assert body["contents"][0]["parts"][1]["inline_data"]["mime_type"] == "image/png"
    _, _, body = fakes.last("bedrock")
    assert body["messages"][0]["content"][1]["image"]["format"] == "png"
    _, headers, body = fakes.last("azure")
    assert body["messages"] == image
    assert headers["api-key"] == AZURE_KEY

    for model in PROVIDERS:
        resp = await client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "answer as json"}],
            response_format={"type": "json_object"},
        )
        content = resp.choices[0].message.content or ""
        assert json.loads(content)["answer"] == fakes.reply if model != "azure" else content


@pytest.mark.parametrize(
    ("model", "fake", "status"),
    [("anthropic", "anthropic", 429), ("gemini", "gemini", 429), ("bedrock", "bedrock", 429),
     ("azure", "azure", 429), ("vertex_ai", "vertex", 400)],
)  # fmt: skip
async def test_provider_errors_keep_status_and_message(
    client: openai.AsyncOpenAI, fakes: FakeProviders, model: str, fake: str, status: int
) -> None:
    fakes.fail[fake] = status
    with pytest.raises(openai.APIStatusError) as err:
        await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}]
        )
    assert err.value.status_code == status
    assert isinstance(err.value.body, dict)
    assert err.value.body.get("message")


async def test_anthropic_529_falls_back_to_openai_compatible(
    client: openai.AsyncOpenAI, js: JetStreamContext, fakes: FakeProviders
) -> None:
    fakes.fail["anthropic"] = 529
    raw = await client.chat.completions.with_raw_response.create(
        model="anthropic-overloaded",
        messages=[{"role": "user", "content": "hello"}],
        extra_body={"metadata": {"session_id": "prov-fallback"}},
    )
    assert raw.parse().choices[0].message.content == "fallback answer"
    assert raw.headers["x-litellm-model-id"] == "openai-backup-1"
    events = await wait_for_events(js, COMPLETED, {"session_id": "prov-fallback"})
    assert events
    assert events[-1][1]["custom_llm_provider"] == "openai"
