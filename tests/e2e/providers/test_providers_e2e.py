"""The running system with one deployment per provider (Anthropic, Azure, Gemini, Vertex AI,
Bedrock), each a fake speaking that provider's wire format: the official `openai` SDK gets the
same chat, stream and tool-call answers from each; an overloaded (529) Anthropic deployment
falls back to an OpenAI-compatible one; the ledger's spend rows and ingress's Prometheus metrics
carry each call's provider and its cost."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.configs import MASTER_KEY, write_config
from support.fake_providers import PROVIDERS, FakeProviders, fake_providers, model_list
from support.fake_upstream import FakeUpstream, fake_upstream
from support.system import System, running_system
from tollgate_devstack.embedded import StackUrls
from tollgate_shared import names

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
PRICES = {
    "input_cost_per_token": "0.000001",
    "output_cost_per_token": "0.000002",
    "cache_read_input_token_cost": "0.0000001",
}
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
ASK = [{"role": "user", "content": "say hello please"}]


@dataclass
class Answers:
    """What each provider answered, and what each call cost (by call id)."""

    text: dict[str, str] = field(default_factory=dict)
    streamed: dict[str, str] = field(default_factory=dict)
    tool_args: dict[str, dict[str, Any]] = field(default_factory=dict)
    cost: dict[str, Decimal] = field(default_factory=dict)
    stream_usage: dict[str, Any] = field(default_factory=dict)
    calls: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))


@pytest.fixture(scope="module")
def fakes() -> Iterator[FakeProviders]:
    with fake_providers() as fp:
        yield fp


@pytest.fixture(scope="module")
def openai_up() -> Iterator[FakeUpstream]:
    with fake_upstream(reply="fallback answer") as up:
        yield up


@pytest.fixture(scope="module")
def system(
    provisioned: StackUrls,
    fakes: FakeProviders,
    openai_up: FakeUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[System]:
    tmp = tmp_path_factory.mktemp("providers-e2e")
    cfg = write_config(
        tmp / "config.yaml",
        model_list=model_list(fakes, openai_up.base_url, PRICES),
        router_settings={
            "num_retries": 0,
            "allowed_fails": 100,
            "fallbacks": [{"anthropic-overloaded": ["openai-backup"]}],
        },
    )
    # Ingress and the ledger are what these calls touch (spend rows); fewer processes start faster.
    with running_system(provisioned, tmp, cfg, backends=("ledger",)) as sys_:
        yield sys_


@pytest.fixture(scope="module")
def client(system: System) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{system.ingress_url}/v1", api_key=MASTER_KEY, max_retries=0
    )


async def _ask(client: openai.AsyncOpenAI, fakes: FakeProviders, model: str, out: Answers) -> None:
    """A plain chat, the same chat streamed, and a tool call, to one provider."""
    session = {"litellm_session_id": f"e2e-{model}"}
    plain = await client.chat.completions.with_raw_response.create(
        model=model,
        messages=ASK,
        max_tokens=50,
        extra_body=session,  # type: ignore[arg-type]
    )
    out.text[model] = plain.parse().choices[0].message.content or ""
    out.cost[plain.headers[names.HDR_CALL_ID]] = Decimal(plain.headers[names.HDR_RESPONSE_COST])
    out.calls[model].append(plain.headers[names.HDR_CALL_ID])

    streamed = await client.chat.completions.with_raw_response.create(
        model=model, messages=ASK, max_tokens=50, stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True}, extra_body=session,
    )  # fmt: skip
    parts = []
    async for chunk in streamed.parse():
        if chunk.usage:
            out.stream_usage[model] = chunk.usage
        parts += [c.delta.content or "" for c in chunk.choices]
    out.streamed[model] = "".join(parts)
    out.calls[model].append(streamed.headers[names.HDR_CALL_ID])

    fakes_tool = await client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "weather in Paris?"}],
        tools=TOOLS, extra_body=session,
    )  # fmt: skip
    tc = fakes_tool.parse().choices[0].message.tool_calls
    assert tc, f"{model} answered no tool call"
    out.tool_args[model] = {tc[0].function.name: json.loads(tc[0].function.arguments)}  # type: ignore[union-attr]
    out.calls[model].append(fakes_tool.headers[names.HDR_CALL_ID])


@pytest.fixture(scope="module")
async def answers(client: openai.AsyncOpenAI, fakes: FakeProviders) -> Answers:
    fakes.reset()
    out = Answers()
    fakes.tool_call = ("get_weather", {"city": "Paris"})  # answered only when tools are offered
    for model in PROVIDERS:
        await _ask(client, fakes, model, out)
    assert not fakes.problems, fakes.problems
    fakes.reset()
    return out


async def spend_rows(system: System, count: int, **params: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=system.ingress_url, headers=AUTH) as http:
        for _ in range(150):
            r = await http.get("/spend/logs", params=params)
            assert r.status_code == 200, r.text
            rows: list[dict[str, Any]] = r.json()
            if len(rows) >= count:
                return rows
            await asyncio.sleep(0.1)
    raise AssertionError(f"{count} rows for {params} never appeared:\n{system.logs()}")


@pytest.mark.parametrize("model", PROVIDERS)
async def test_each_provider_answers_chat_stream_and_tools(
    answers: Answers, fakes: FakeProviders, model: str
) -> None:
    assert answers.text[model] == fakes.reply
    assert answers.streamed[model] == fakes.reply
    assert answers.tool_args[model] == {"get_weather": {"city": "Paris"}}
    assert answers.stream_usage[model].completion_tokens > 0


async def test_spend_rows_carry_provider_and_cost(system: System, answers: Answers) -> None:
    for model in PROVIDERS:
        rows = await spend_rows(system, 3, session_id=f"e2e-{model}")
        by_id = {r["request_id"]: r for r in rows}
        assert set(by_id) == set(answers.calls[model])
        plain, streamed, _tool = (by_id[i] for i in answers.calls[model])
        for row in rows:
            assert row["custom_llm_provider"] == model
            assert row["model_id"] == f"{model}-1"
            assert row["status"] == "success"
            assert Decimal(str(row["spend"])) > 0
        # The row's spend is the cost the caller was told, and a stream costs the same.
        assert Decimal(str(plain["spend"])) == answers.cost[plain["request_id"]]
        assert Decimal(str(streamed["spend"])) == Decimal(str(plain["spend"]))
        assert streamed["total_tokens"] == plain["total_tokens"]


async def test_metrics_carry_provider_and_cost(system: System, answers: Answers) -> None:
    async with httpx.AsyncClient(base_url=system.ingress_url, headers=AUTH) as http:
        rows = {m: await spend_rows(system, 3, session_id=f"e2e-{m}") for m in PROVIDERS}
        text = (await http.get("/metrics")).text
    spend: dict[str, float] = defaultdict(float)
    providers: dict[str, set[str]] = defaultdict(set)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "litellm_spend_metric_total":
                spend[s.labels.get("model_id", "")] += s.value
            if s.name == "litellm_deployment_success_responses_total":
                providers[s.labels["model_id"]].add(s.labels["api_provider"])
    for model in PROVIDERS:
        assert providers[f"{model}-1"] == {model}
        expected = sum(Decimal(str(r["spend"])) for r in rows[model])
        assert spend[f"{model}-1"] == pytest.approx(float(expected), rel=1e-9)


async def test_overloaded_anthropic_falls_back_to_openai_compatible(
    system: System, client: openai.AsyncOpenAI, fakes: FakeProviders, answers: Answers
) -> None:
    fakes.fail["anthropic"] = 529
    try:
        raw = await client.chat.completions.with_raw_response.create(
            model="anthropic-overloaded",
            messages=[{"role": "user", "content": "hello"}],
            extra_body={"litellm_session_id": "e2e-fallback"},
        )
    finally:
        fakes.reset()
    assert raw.parse().choices[0].message.content == "fallback answer"
    assert raw.headers["x-litellm-model-id"] == "openai-backup-1"
    [row] = await spend_rows(system, 1, session_id="e2e-fallback")
    assert row["custom_llm_provider"] == "openai"
    assert row["model_id"] == "openai-backup-1"
    assert Decimal(str(row["spend"])) == Decimal(raw.headers[names.HDR_RESPONSE_COST])
