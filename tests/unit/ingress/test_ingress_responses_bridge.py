"""The Responses bridge: input items into chat messages, tools both ways, chat answers and
chat streams into Response objects and the Responses event stream."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tollgate_ingress.parsing import BadRequestError
from tollgate_ingress.responses import bridge
from tollgate_ingress.usage import Usage
from tollgate_shared.config import LitellmParams

TOOLS = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]


def events(raw: list[bytes]) -> list[dict[str, Any]]:
    out = []
    for b in raw:
        kind, data = b.decode().strip().split("\n")
        assert kind.startswith("event: ")
        ev = json.loads(data.removeprefix("data: "))
        assert ev["type"] == kind.removeprefix("event: ")
        out.append(ev)
    return out


def test_native_providers() -> None:
    assert bridge.is_native(LitellmParams(model="openai/gpt-4o"))
    assert not bridge.is_native(LitellmParams(model="azure/gpt-4o"))
    assert not bridge.is_native(LitellmParams(model="openai/demo", mock_response="hi"))
    for model in ("hosted_vllm/qwen", "ollama/llama3", "deepseek/chat", "openrouter/x"):
        assert not bridge.is_native(LitellmParams(model=model))


def test_string_input_instructions_and_parameters() -> None:
    items = bridge.normalise_input("hello", "abc")
    assert items == [
        {
            "type": "message",
            "id": "msg_abc_0",
            "role": "user",
            "content": [{"type": "input_text", "text": "hello"}],
            "status": "completed",
        }
    ]
    body = {
        "model": "m",
        "input": "hello",
        "instructions": "be brief",
        "max_output_tokens": 50,
        "temperature": 0.2,
        "metadata": {"session_id": "s"},
        "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}},
    }
    chat = bridge.chat_body(body, bridge.to_messages(items, body["instructions"]))
    assert chat["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello"},
    ]
    assert chat["max_tokens"] == 50
    assert chat["temperature"] == 0.2
    assert chat["metadata"] == {"session_id": "s"}
    assert chat["response_format"]["json_schema"]["name"] == "x"


def test_function_calls_join_the_assistant_turn_and_outputs_become_tool_messages() -> None:
    items = bridge.normalise_input(
        [
            {"role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {"role": "developer", "content": "note"},
        ],
        "x",
    )
    bridge.check_tool_outputs([], items)
    assert bridge.to_messages(items, None) == [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "system", "content": "note"},
    ]
    chat = bridge.chat_body(
        {"model": "m", "tools": TOOLS, "tool_choice": {"type": "function", "name": "get_weather"}},
        [],
    )
    assert chat["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    ]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


@pytest.mark.parametrize(
    ("inp", "param"),
    [
        ([{"type": "computer_call_output"}], "input[0].type"),
        ([{"role": "robot", "content": "x"}], "input[0].role"),
        ([{"role": "user", "content": [{"type": "input_audio"}]}], "input[0].content[0].type"),
        (["just a string"], "input[0]"),
    ],
)
def test_bad_items_name_their_parameter(inp: Any, param: str) -> None:
    with pytest.raises(BadRequestError) as err:
        bridge.normalise_input(inp, "x")
    assert err.value.param == param


def test_a_tool_output_without_its_call_is_refused_but_history_counts() -> None:
    items = bridge.normalise_input(
        [{"type": "function_call_output", "call_id": "c9", "output": "x"}], "x"
    )
    with pytest.raises(BadRequestError) as err:
        bridge.check_tool_outputs([], items)
    assert err.value.param == "input[0]"
    history = [{"type": "function_call", "call_id": "c9", "name": "f", "arguments": "{}"}]
    bridge.check_tool_outputs(history, items)


def test_only_function_tools_are_bridged() -> None:
    with pytest.raises(BadRequestError) as err:
        bridge.chat_body({"model": "m", "tools": [{"type": "web_search"}]}, [])
    assert err.value.param == "tools[0].type"


def test_unknown_items_pass_to_a_native_upstream() -> None:
    items = bridge.normalise_input([{"type": "computer_call_output", "x": 1}], "x", strict=False)
    assert items == [{"type": "computer_call_output", "x": 1}]


def test_chat_answer_becomes_a_response() -> None:
    chat = {
        "choices": [
            {
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": "checking",
                    "tool_calls": [
                        {"id": "c1", "function": {"name": "get_weather", "arguments": "{}"}}
                    ],
                },
            }
        ]
    }
    usage = Usage(10, 5, 15, cached_tokens=2, reasoning_tokens=1)
    r = bridge.response_from_chat(chat, "resp_1", 7, {"model": "m", "tools": TOOLS}, usage)
    assert r["object"] == "response"
    assert r["status"] == "completed"
    assert [o["type"] for o in r["output"]] == ["message", "function_call"]
    assert r["output"][0]["content"][0] == {
        "type": "output_text",
        "text": "checking",
        "annotations": [],
    }
    assert r["output"][1]["call_id"] == "c1"
    assert r["usage"] == {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 2},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 1},
        "total_tokens": 15,
    }
    assert bridge.usage_from_response(r["usage"]) == usage
    cut = {"choices": [{"finish_reason": "length", "message": {"content": "abc"}}]}
    r = bridge.response_from_chat(cut, "resp_2", 7, {"model": "m"}, usage)
    assert (r["status"], r["incomplete_details"]) == ("incomplete", {"reason": "max_output_tokens"})


def test_history_continues_with_the_output() -> None:
    chat = {"choices": [{"finish_reason": "stop", "message": {"content": "Hi Zhang San"}}]}
    r = bridge.response_from_chat(chat, "resp_1", 7, {"model": "m"}, Usage())
    history = bridge.history_of(r["output"])
    items = bridge.normalise_input("who am I?", "b")
    assert bridge.to_messages([*history, *items], None) == [
        {"role": "assistant", "content": "Hi Zhang San"},
        {"role": "user", "content": "who am I?"},
    ]


def test_stream_of_text_becomes_the_event_stream_in_order() -> None:
    t = bridge.StreamTranslator("resp_1", 7, {"model": "m"})
    raw = t.start()
    for piece in ("Hel", "lo"):
        raw += t.feed({"choices": [{"delta": {"content": piece}}]})
    raw += t.feed({"choices": [{"delta": {}, "finish_reason": "stop"}]})
    raw += t.finish()
    response = t.snapshot("completed", Usage(3, 2, 5))
    raw.append(t.completed(response))
    evs = events(raw)
    assert [e["type"] for e in evs] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in evs] == list(range(len(evs)))
    assert evs[6]["text"] == "Hello"
    assert evs[-1]["response"]["usage"]["output_tokens"] == 2
    assert evs[-1]["response"]["output"][0]["content"][0]["text"] == "Hello"


def test_stream_of_tool_calls_becomes_argument_deltas() -> None:
    t = bridge.StreamTranslator("resp_1", 7, {"model": "m"})
    raw = t.start()
    raw += t.feed(
        {
            "choices": [
                {
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "c1",
                                "function": {"name": "get_weather", "arguments": '{"ci'},
                            }
                        ]
                    }
                }
            ]
        }
    )
    raw += t.feed(
        {
            "choices": [
                {"delta": {"tool_calls": [{"index": 0, "function": {"arguments": 'ty": 1}'}}]}}
            ]
        }
    )
    raw += t.finish()
    kinds = [e["type"] for e in events(raw)]
    assert kinds[2:] == [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
    ]
    [item] = t.snapshot("completed")["output"]
    assert (item["call_id"], item["name"], item["arguments"]) == (
        "c1",
        "get_weather",
        '{"city": 1}',
    )


def test_error_event_carries_openais_error() -> None:
    [ev] = events([bridge.error_event("cut", None, 4, 502)])
    assert ev["sequence_number"] == 4
    assert ev["error"]["message"] == "cut"
    assert ev["error"]["type"] == "api_error"


def test_native_body_drops_gateway_fields() -> None:
    body = {
        "model": "m",
        "input": "x",
        "litellm_session_id": "s",
        "mock_response": "y",
        "metadata": {"tags": ["a"], "user": "u"},
    }
    assert bridge.native_body(body) == {"model": "m", "input": "x", "metadata": {"user": "u"}}


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b'{"input": "x"}', "model"),
        (b'{"model": "m"}', "input"),
        (b'{"model": "m", "input": "x", "stream": "yes"}', "stream"),
        (b'{"model": "m", "input": "x", "previous_response_id": 3}', "previous_response_id"),
    ],
)
def test_load_body_names_the_parameter(raw: bytes, param: str) -> None:
    with pytest.raises(BadRequestError) as err:
        bridge.load_body(raw)
    assert err.value.param == param
