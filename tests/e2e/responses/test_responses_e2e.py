"""The Responses API through the running system with the official openai SDK: seed 001's
two-call conversation with no sleep across two ingress replicas (bridged over a chat-only
upstream), streaming, retrieve/delete/input items, key scoping, bad input, a cut stream,
and native pass-through to an upstream that speaks /v1/responses."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
import yaml
from nats.js import JetStreamContext

from support.configs import MASTER_KEY, write_config
from support.events import wait_for_events
from support.fake_upstream import FakeUpstream, fake_upstream
from support.processes import Service, start_service, stop_service
from support.system import System, running_system
from tollgate_devstack.embedded import StackUrls, free_port
from tollgate_shared import names

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}


@pytest.fixture(scope="module")
def chat_only() -> Iterator[FakeUpstream]:
    with fake_upstream(reply="你是张三") as up:
        yield up


@pytest.fixture(scope="module")
def native() -> Iterator[FakeUpstream]:
    with fake_upstream(reply="native answer here", responses_api=True) as up:
        yield up


@pytest.fixture(scope="module")
def system(
    provisioned: StackUrls,
    chat_only: FakeUpstream,
    native: FakeUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[System]:
    tmp = tmp_path_factory.mktemp("responses-e2e")
    cfg = write_config(tmp / "config.yaml", chat_only.base_url)
    data = yaml.safe_load(cfg.read_text())
    data["model_list"] += [
        {
            # Seed 001's model name, served by a provider with no Responses API: bridged.
            "model_name": "gpt-4o",
            "litellm_params": {
                "model": "hosted_vllm/qwen",
                "api_base": chat_only.base_url,
                "input_cost_per_token": "0.000003",
                "output_cost_per_token": "0.000007",
            },
            "model_info": {"id": "bridged-1"},
        },
        {
            "model_name": "gpt-4o-native",
            "litellm_params": {
                "model": "openai/gpt-4o",
                "api_base": native.base_url,
                "api_key": "sk-native",
                "input_cost_per_token": "0.000003",
                "output_cost_per_token": "0.000007",
            },
            "model_info": {"id": "native-1"},
        },
        {
            # A provider LiteLLM calls on its own /v1/completions: passed through.
            "model_name": "gpt-instruct",
            "litellm_params": {
                "model": "text-completion-openai/gpt-3.5-turbo-instruct",
                "api_base": native.base_url,
                "api_key": "sk-native",
                "input_cost_per_token": "0.000001",
                "output_cost_per_token": "0.000002",
            },
            "model_info": {"id": "instruct-1"},
        },
    ]
    data["router_settings"] = {"num_retries": 0, "allowed_fails": 100}
    cfg.write_text(yaml.safe_dump(data))
    with running_system(provisioned, tmp, cfg) as sys_:
        yield sys_


@pytest.fixture(scope="module")
def second_ingress(system: System, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """Another ingress replica in front of the same backends, NATS and Redis."""
    tmp = tmp_path_factory.mktemp("ingress-b")
    env = {
        **system.env,
        "TOLLGATE_SPOOL_PATH": str(tmp / "spool.sqlite3"),
        **{f"TOLLGATE_{n.upper()}_URL": system.url(n) for n in system.services if n != "ingress"},
    }
    svc = start_service("tollgate_ingress", free_port(), env, tmp, ready_timeout=90)
    yield svc
    stop_service(svc)


def client_for(url: str, key: str = MASTER_KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


@pytest.fixture
async def client(system: System) -> AsyncIterator[openai.AsyncOpenAI]:
    c = client_for(system.ingress_url)
    yield c
    await c.close()


@pytest.fixture(autouse=True)
def reset(chat_only: FakeUpstream) -> None:
    chat_only.cut_after = None
    chat_only.tool_call = None


async def wait_rows(system: System, count: int, **params: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=system.ingress_url, headers=AUTH) as http:
        for _ in range(100):
            r = await http.get("/spend/logs", params=params)
            assert r.status_code == 200, r.text
            rows: list[dict[str, Any]] = r.json()
            if len(rows) >= count:
                return rows
            await asyncio.sleep(0.1)
    raise AssertionError(f"{count} rows for {params} never appeared")


async def test_seed_001_two_calls_no_sleep_across_two_replicas(
    system: System, second_ingress: Service, chat_only: FakeUpstream
) -> None:
    a = client_for(system.ingress_url)
    b = client_for(second_ingress.url)
    # Seed 001, verbatim, except that the second call goes to the other replica at once.
    client = a
    response = await client.responses.create(model="gpt-4o", input="你好，我是张三")  # noqa: RUF001
    print(response.output_text)
    first_answered = time.perf_counter()
    client = b
    response2 = await client.responses.create(
        model="gpt-4o", input="我是谁", previous_response_id=response.id
    )
    print(response2.output_text)
    gap_ms = (time.perf_counter() - first_answered) * 1000
    assert response2.output_text == "你是张三"
    # The second upstream request carries the first turn.
    assert chat_only.requests[-1]["messages"] == [
        {"role": "user", "content": "你好，我是张三"},  # noqa: RUF001
        {"role": "assistant", "content": "你是张三"},
        {"role": "user", "content": "我是谁"},
    ]
    assert response2.previous_response_id == response.id
    assert response2.usage is not None
    assert response2.usage.input_tokens == 3  # words of the three messages

    # Read-your-writes, measured: 20 chains, the second call on the other replica issued
    # the moment the first answer arrives; every one sees its history.
    gaps = []
    for i in range(20):
        first = await a.responses.create(model="gpt-4o", input=f"my name is user{i}")
        t = time.perf_counter()
        second = await b.responses.create(
            model="gpt-4o", input="who am I", previous_response_id=first.id
        )
        gaps.append((time.perf_counter() - t) * 1000)
        assert second.status == "completed"
        assert chat_only.requests[-1]["messages"][0]["content"] == f"my name is user{i}"
    print(
        f"\nseed 001 second call done {gap_ms:.1f} ms after the first answer; "
        f"second-call latency over 20 cross-replica chains: p50 {statistics.median(gaps):.1f} ms, "
        f"max {max(gaps):.1f} ms, 0 retries"
    )

    # One session for the chain, with LiteLLM's call type.
    rows = await wait_rows(system, 2, session_id=response.id)
    assert {r["call_type"] for r in rows} == {"aresponses"}
    await a.close()
    await b.close()


async def test_stream_retrieve_input_items_delete(
    client: openai.AsyncOpenAI, chat_only: FakeUpstream
) -> None:
    kinds: list[str] = []
    async with client.responses.stream(
        model="gpt-4o",
        input=[{"role": "user", "content": "stream please"}],
        instructions="Be brief",
    ) as stream:
        async for ev in stream:
            kinds.append(ev.type)
        final = await stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[2:4] == ["response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert final.output_text == "你是张三"
    assert final.usage is not None
    assert final.usage.output_tokens == 1
    assert chat_only.requests[-1]["messages"][0] == {"role": "system", "content": "Be brief"}

    got = await client.responses.retrieve(final.id)
    assert got.output_text == "你是张三"
    items = await client.responses.input_items.list(final.id)
    assert [i.type for i in items.data] == ["message"]
    deleted = await client.responses.delete(final.id)
    assert deleted is None or getattr(deleted, "deleted", True)
    with pytest.raises(openai.NotFoundError) as err:
        await client.responses.create(model="gpt-4o", input="again", previous_response_id=final.id)
    assert err.value.body["param"] == "previous_response_id"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(final.id)


async def test_store_false_and_another_keys_response_are_404(
    system: System, client: openai.AsyncOpenAI
) -> None:
    unstored = await client.responses.create(model="gpt-4o", input="forget me", store=False)
    with pytest.raises(openai.NotFoundError) as err:
        await client.responses.create(
            model="gpt-4o", input="again", previous_response_id=unstored.id
        )
    assert err.value.body["param"] == "previous_response_id"  # type: ignore[index]
    assert err.value.body["code"] == "previous_response_not_found"  # type: ignore[index]

    mine = await client.responses.create(model="gpt-4o", input="master's secret")
    async with httpx.AsyncClient(base_url=system.ingress_url, headers=AUTH) as http:
        r = await http.post("/key/generate", json={"key_alias": "responses-other"})
        assert r.status_code == 200, r.text
        other_key = r.json()["key"]
    other = client_for(system.ingress_url, other_key)
    for _ in range(50):  # the new key reaches ingress through its KV watch
        try:
            await other.models.list()
            break
        except openai.AuthenticationError:
            await asyncio.sleep(0.1)
    with pytest.raises(openai.NotFoundError):
        await other.responses.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError) as err:
        await other.responses.create(model="gpt-4o", input="x", previous_response_id=mine.id)
    assert err.value.body["param"] == "previous_response_id"  # type: ignore[index]
    own = await other.responses.create(model="gpt-4o", input="my own")
    assert (await other.responses.retrieve(own.id)).id == own.id
    await other.close()


async def test_bad_input_names_the_parameter(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        await client.responses.create(
            model="gpt-4o",
            input=[{"type": "computer_call_output", "call_id": "x"}],  # type: ignore[list-item]
        )
    assert err.value.body["param"] == "input[0].type"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as err:
        await client.responses.create(
            model="gpt-4o",
            input=[{"type": "function_call_output", "call_id": "call_nowhere", "output": "1"}],
        )
    assert err.value.body["param"] == "input[0]"  # type: ignore[index]


async def test_tools_map_both_ways(client: openai.AsyncOpenAI, chat_only: FakeUpstream) -> None:
    chat_only.tool_call = {"name": "get_weather", "arguments": {"city": "Paris"}}
    tools: Any = [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    first = await client.responses.create(
        model="gpt-4o", input="weather in Paris?", tools=tools, tool_choice="auto"
    )
    [call] = [o for o in first.output if o.type == "function_call"]
    assert (call.name, call.arguments) == ("get_weather", '{"city": "Paris"}')
    assert chat_only.requests[-1]["tools"][0]["function"]["name"] == "get_weather"

    kinds = []
    async with client.responses.stream(model="gpt-4o", input="again", tools=tools) as stream:
        async for ev in stream:
            kinds.append(ev.type)
    assert "response.function_call_arguments.delta" in kinds
    assert "response.function_call_arguments.done" in kinds

    chat_only.tool_call = None
    second = await client.responses.create(
        model="gpt-4o",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
        tools=tools,
    )
    assert second.output_text == "你是张三"
    sent = chat_only.requests[-1]["messages"]
    assert sent[-2]["tool_calls"][0]["id"] == call.call_id
    assert sent[-1] == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny"}


async def test_cut_stream_is_an_error_and_a_costed_failure(
    client: openai.AsyncOpenAI, chat_only: FakeUpstream, js: JetStreamContext
) -> None:
    chat_only.reply = "one two three four five"
    chat_only.cut_after = 2

    async def consume() -> None:
        async with client.responses.stream(model="gpt-4o", input="count") as stream:
            async for _ in stream:
                pass

    try:
        with pytest.raises(openai.APIError):
            await consume()
    finally:
        chat_only.reply = "你是张三"
    events = await wait_for_events(
        js, "llm.request.failed.v1.>", {"call_type": "aresponses", "status_code": 502}
    )
    assert events, "no failed event for the cut stream"
    ev = events[-1][1]
    assert ev["completion_tokens"] > 0
    assert ev["usage_estimated"] is True


async def test_native_pass_through(client: openai.AsyncOpenAI, native: FakeUpstream) -> None:
    raw = await client.responses.with_raw_response.create(model="gpt-4o-native", input="hi there")
    first = raw.parse()
    assert first.id.startswith("resp_fake")
    assert first.output_text == "native answer here"
    assert raw.headers[names.HDR_RESPONSE_COST]
    assert native.requests[-1]["model"] == "gpt-4o"
    assert native.headers[-1]["authorization"] == "Bearer sk-native"
    second = await client.responses.create(
        model="gpt-4o-native", input="and now?", previous_response_id=first.id
    )
    assert native.requests[-1]["previous_response_id"] == first.id
    assert second.output_text == "native answer here"
    kinds = []
    async with client.responses.stream(model="gpt-4o-native", input="stream it") as stream:
        async for ev in stream:
            kinds.append(ev.type)
        final = await stream.get_final_response()
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    assert final.usage is not None
    assert final.usage.output_tokens == 3
    assert (await client.responses.retrieve(final.id)).id == final.id


async def test_demo_mock_model_answers_the_readme_quick_start(client: openai.AsyncOpenAI) -> None:
    first = await client.responses.create(model="demo", input="你好")
    second = await client.responses.create(
        model="demo", input="我是谁", previous_response_id=first.id
    )
    assert (first.output_text, second.output_text) == ("mocked reply", "mocked reply")
    items = await client.responses.input_items.list(second.id)
    assert items.data[0].type == "message"


async def test_probes_model_by_id_and_unserved_endpoints(system: System) -> None:
    async with httpx.AsyncClient(base_url=system.ingress_url, headers=AUTH) as http:
        assert (await http.get("/health/liveliness")).json() == "I'm alive!"
        assert (await http.get("/health/liveness")).status_code == 200
        ready = await http.get("/health/readiness")
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "healthy"
        assert ready.json()["cache"] == "redis"
        assert set(ready.json()["dependencies"]) >= {"nats", "redis"}
        model = await http.get("/v1/models/gpt-4o")
        assert model.json()["id"] == "gpt-4o"
        missing = await http.get("/v1/models/nope")
        assert missing.status_code == 404
        assert missing.json()["error"]["param"] == "model"
        for path in ("/v1/images/generations", "/v1/files", "/v1/batches/b1", "/v1/moderations"):
            r = await http.post(path, json={})
            assert r.status_code == 501, path
            assert "not proxied" in r.json()["error"]["message"]


async def test_anthropic_sdk_messages_bridged(
    system: System, chat_only: FakeUpstream, js: JetStreamContext
) -> None:
    client = anthropic.AsyncAnthropic(base_url=system.ingress_url, api_key=MASTER_KEY)
    msg = await client.messages.create(
        model="gpt-4o",
        max_tokens=100,
        system="Be brief",
        messages=[{"role": "user", "content": "hello claude"}],
    )
    assert msg.content[0].type == "text"
    assert msg.content[0].text == "你是张三"
    assert msg.stop_reason == "end_turn"
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (4, 1)
    assert chat_only.requests[-1]["messages"][0] == {"role": "system", "content": "Be brief"}
    assert chat_only.requests[-1]["max_tokens"] == 100

    async with client.messages.stream(
        model="gpt-4o", max_tokens=50, messages=[{"role": "user", "content": "stream it"}]
    ) as stream:
        kinds = [ev.type async for ev in stream]
        final = await stream.get_final_message()
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert "content_block_delta" in kinds
    assert final.content[0].text == "你是张三"  # type: ignore[union-attr]
    assert final.usage.output_tokens == 1

    chat_only.tool_call = {"name": "get_weather", "arguments": {"city": "Paris"}}
    tools: Any = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    used = await client.messages.create(
        model="gpt-4o",
        max_tokens=50,
        tools=tools,
        messages=[{"role": "user", "content": "weather?"}],
    )
    assert used.stop_reason == "tool_use"
    [block] = used.content
    assert block.type == "tool_use"
    assert block.input == {"city": "Paris"}

    with pytest.raises(anthropic.AuthenticationError):
        await anthropic.AsyncAnthropic(
            base_url=system.ingress_url, api_key="sk-wrong", max_retries=0
        ).messages.create(model="gpt-4o", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    await client.close()


async def test_bridge_overhead_over_a_plain_chat_call(client: openai.AsyncOpenAI) -> None:
    """Measured, not asserted tightly (a shared 2-core machine): the bridge's added p50."""

    async def p50(call: Any, n: int = 40) -> float:
        times = []
        for _ in range(n):
            t = time.perf_counter()
            await call()
            times.append((time.perf_counter() - t) * 1000)
        return statistics.median(times)

    async def chat() -> None:
        await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )

    async def responses() -> None:
        await client.responses.create(model="gpt-4o", input="hi")

    await chat()
    await responses()
    chat_ms, resp_ms = await p50(chat), await p50(responses)
    print(f"\nchat p50 {chat_ms:.2f} ms, responses (bridged) p50 {resp_ms:.2f} ms, "
          f"added {resp_ms - chat_ms:.2f} ms")  # fmt: skip
    assert resp_ms < chat_ms + 100


async def test_text_completions_bridged_and_native(
    client: openai.AsyncOpenAI, chat_only: FakeUpstream, native: FakeUpstream, js: JetStreamContext
) -> None:
    """Legacy /v1/completions: bridged over chat for a chat-only provider (the prompt as one
    user message), passed through to a text-completion provider; plain and streamed; each a
    costed text_completion call."""
    raw = await client.completions.with_raw_response.create(
        model="gpt-4o", prompt="say who", max_tokens=7
    )
    bridged = raw.parse()
    assert bridged.object == "text_completion"
    assert bridged.choices[0].text == "你是张三"
    assert bridged.usage is not None
    assert bridged.usage.completion_tokens == 1
    assert float(raw.headers[names.HDR_RESPONSE_COST]) > 0
    sent = chat_only.requests[-1]
    assert sent["messages"] == [{"role": "user", "content": "say who"}]
    assert sent["max_tokens"] == 7
    text = ""
    stream = await client.completions.create(model="gpt-4o", prompt="stream it", stream=True)
    async for chunk in stream:
        assert chunk.object == "text_completion"
        text += "".join(c.text for c in chunk.choices)
    assert text == "你是张三"

    direct = await client.completions.create(model="gpt-instruct", prompt="hello there")
    assert direct.choices[0].text == "native answer here"
    assert native.requests[-1]["model"] == "gpt-3.5-turbo-instruct"
    assert native.requests[-1]["prompt"] == "hello there"
    streamed = await client.completions.create(
        model="gpt-instruct", prompt=["one prompt"], stream=True
    )
    pieces = [c.choices[0].text async for c in streamed if c.choices]
    assert "".join(pieces) == "native answer here"
    # Token ids cannot be bridged over chat: refused naming the parameter.
    with pytest.raises(openai.BadRequestError) as bad:
        await client.completions.create(model="gpt-4o", prompt=[1, 2, 3])
    assert bad.value.body["param"] == "prompt"  # type: ignore[index]

    events = await wait_for_events(
        js, "llm.request.completed.v1.>", {"call_type": "text_completion"}, count=4
    )
    assert {e["model_group"] for _, e in events} >= {"gpt-4o", "gpt-instruct"}
    assert all(float(e["spend"]) > 0 for _, e in events)


async def test_user_list_and_model_info_in_litellm_shapes(system: System) -> None:
    async with httpx.AsyncClient(base_url=system.ingress_url, headers=AUTH) as http:
        for uid in ("list-u1", "list-u2"):
            r = await http.post("/user/new", json={"user_id": uid, "auto_create_key": False})
            assert r.status_code == 200, r.text
        page = await http.get("/user/list", params={"page_size": 1, "user_ids": "list-u1,list-u2"})
        assert page.status_code == 200, page.text
        body = page.json()
        assert (body["total"], body["page"], body["page_size"], body["total_pages"]) == (2, 1, 1, 2)
        assert body["users"][0]["user_id"] in {"list-u1", "list-u2"}
        for path in ("/model/info", "/v1/model/info"):
            info = await http.get(path)
            assert info.status_code == 200, (path, info.text)
            entry = next(e for e in info.json()["data"] if e["model_name"] == "gpt-instruct")
            mi = entry["model_info"]
            assert mi["litellm_provider"] == "text-completion-openai"
            assert mi["key"] == "gpt-3.5-turbo-instruct"
            assert mi["input_cost_per_token"] is not None
            assert {"mode", "max_tokens", "supports_function_calling", "db_model"} <= set(mi)
            assert "sk-native" not in info.text
