"""The Responses API over chat completions: input items into messages, tools both ways, a
chat answer into a Response object, a chat stream into the Responses event stream."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from tollgate_ingress.parsing import BadRequestError, load_object
from tollgate_ingress.usage import RESPONSES_USAGE, Usage, usage_from
from tollgate_shared.config import LitellmParams
from tollgate_shared.errors import error_body

# Providers whose own API serves /v1/responses: passed through, not bridged. (Azure serves it
# too, but at its own URL with its own auth and api-version: bridged through its adapter.)
NATIVE_PROVIDERS = frozenset({"openai"})
ITEM_TYPES = ("message", "function_call", "function_call_output", "reasoning")
ROLES = frozenset({"user", "assistant", "system", "developer"})
_TEXT_PARTS = frozenset({"input_text", "output_text", "text", "refusal"})
_PART_TYPES = ("input_text", "output_text", "refusal", "input_image", "input_file")
# Request fields the gateway reads (LiteLLM's): carried into the chat body it parses.
GATEWAY_FIELDS = (
    "metadata",
    "litellm_session_id",
    "tags",
    "mock_response",
    "litellm_metadata",
    "litellm_trace_id",
)


def is_native(params: LitellmParams) -> bool:
    """Whether a deployment serves the Responses API itself (and answers for real)."""
    return params.provider in NATIVE_PROVIDERS and params.mock_response is None


def load_body(raw: bytes) -> dict[str, Any]:
    """A Responses request body, checked for what the gateway relies on."""
    body = load_object(raw)
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise BadRequestError("model is required and must be a string", "model")
    inp = body.get("input")
    if not (isinstance(inp, str) and inp) and not (isinstance(inp, list) and inp):
        raise BadRequestError(
            "input must be a non-empty string or a non-empty list of input items", "input"
        )
    for name in ("stream", "store"):
        if name in body and not isinstance(body[name], bool):
            raise BadRequestError(f"{name} must be a boolean", name)
    prev = body.get("previous_response_id")
    if prev is not None and (not isinstance(prev, str) or not prev):
        raise BadRequestError("previous_response_id must be a string", "previous_response_id")
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise BadRequestError("instructions must be a string", "instructions")
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise BadRequestError("tools must be a list", "tools")
    return body


# -- input items --------------------------------------------------------------------------------
def _part(part: Any, where: str, role: str) -> dict[str, Any]:
    if isinstance(part, str):
        part = {"type": "input_text", "text": part}
    if not isinstance(part, dict):
        raise BadRequestError(f"{where} must be an object", where)
    kind = part.get("type")
    if kind not in _PART_TYPES:
        raise BadRequestError(
            f"Invalid value: {kind!r}. Supported values are: {', '.join(map(repr, _PART_TYPES))}.",
            f"{where}.type",
        )
    if kind in _TEXT_PARTS and not isinstance(part.get("text", part.get("refusal")), str):
        raise BadRequestError(f"{where}.text must be a string", f"{where}.text")
    if kind == "input_text" and role == "assistant":
        return {**part, "type": "output_text", "annotations": part.get("annotations", [])}
    return dict(part)


def normalise_input(inp: Any, ids: str, *, strict: bool = True) -> list[dict[str, Any]]:
    """The request's `input` as stored input items (each with an id), validated.

    `strict` refuses what the bridge cannot translate; a native upstream judges for itself.
    """
    if isinstance(inp, str):
        inp = [{"role": "user", "content": inp}]
    out: list[dict[str, Any]] = []
    for i, item in enumerate(inp):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise BadRequestError(f"{where} must be an object", where)
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind not in ITEM_TYPES:
            if not strict:
                out.append(dict(item))
                continue
            raise BadRequestError(
                f"Invalid value: {kind!r}. Supported values are: "
                f"{', '.join(map(repr, ITEM_TYPES))}.",
                f"{where}.type",
            )
        item_id = item.get("id") or f"{_PREFIX[kind]}_{ids}_{i}"
        if kind == "message":
            role = item.get("role")
            if role not in ROLES:
                raise BadRequestError(
                    f"Invalid value: {role!r}. Supported values are: "
                    "'user', 'assistant', 'system' and 'developer'.",
                    f"{where}.role",
                )
            content = item.get("content")
            if isinstance(content, str):
                content = [content]
            if not isinstance(content, list):
                raise BadRequestError(f"{where}.content must be a string or a list", where)
            parts = [_part(p, f"{where}.content[{j}]", role) for j, p in enumerate(content)]
            out.append(
                {"type": "message", "id": item_id, "role": role, "content": parts}
                | {"status": "completed"}
            )
        elif kind == "function_call":
            for name in ("call_id", "name"):
                if not isinstance(item.get(name), str) or not item[name]:
                    raise BadRequestError(f"{where}.{name} must be a string", f"{where}.{name}")
            args = item.get("arguments", "")
            out.append(
                {
                    "type": "function_call",
                    "id": item_id,
                    "call_id": item["call_id"],
                    "name": item["name"],
                    "arguments": args if isinstance(args, str) else orjson.dumps(args).decode(),
                    "status": "completed",
                }
            )
        elif kind == "function_call_output":
            if not isinstance(item.get("call_id"), str) or not item["call_id"]:
                raise BadRequestError(f"{where}.call_id must be a string", f"{where}.call_id")
            output = item.get("output", "")
            out.append(
                {
                    "type": "function_call_output",
                    "id": item_id,
                    "call_id": item["call_id"],
                    "output": output if isinstance(output, str) else orjson.dumps(output).decode(),
                    "status": "completed",
                }
            )
        else:
            out.append({**item, "id": item_id})
    return out


_PREFIX = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "reasoning": "rs",
}


def check_tool_outputs(history: list[dict[str, Any]], items: list[dict[str, Any]]) -> None:
    """A function call output must answer a call made earlier in the conversation."""
    calls = {i["call_id"] for i in history if i.get("type") == "function_call"}
    for n, item in enumerate(items):
        if item.get("type") == "function_call":
            calls.add(item["call_id"])
        elif item.get("type") == "function_call_output" and item["call_id"] not in calls:
            raise BadRequestError(
                f"No tool call found for function call output with call_id {item['call_id']}.",
                f"input[{n}]",
            )


def _chat_content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    if all(p.get("type") in _TEXT_PARTS for p in parts):
        return "".join(str(p.get("text", p.get("refusal", ""))) for p in parts)
    out: list[dict[str, Any]] = []
    for p in parts:
        kind = p.get("type")
        if kind in _TEXT_PARTS:
            out.append({"type": "text", "text": p.get("text", p.get("refusal", ""))})
        elif kind == "input_image":
            url = p.get("image_url") or p.get("file_id")
            image: dict[str, Any] = {"url": url}
            if p.get("detail"):
                image["detail"] = p["detail"]
            out.append({"type": "image_url", "image_url": image})
        elif kind == "input_file":
            out.append(
                {
                    "type": "file",
                    "file": {
                        k: p[k]
                        for k in ("file_id", "file_data", "filename")
                        if p.get(k) is not None
                    },
                }
            )
    return out


def to_messages(items: list[dict[str, Any]], instructions: str | None) -> list[dict[str, Any]]:
    """Conversation items as chat messages (function calls join the assistant turn)."""
    messages: list[dict[str, Any]] = []
    if instructions:
        messages.append({"role": "system", "content": instructions})
    for item in items:
        kind = item.get("type")
        if kind == "message":
            role = "system" if item["role"] == "developer" else item["role"]
            messages.append({"role": role, "content": _chat_content(item["content"])})
        elif kind == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append(
                {"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]}
            )
    return messages


def _chat_tools(tools: list[Any]) -> list[dict[str, Any]]:
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else tool
            raise BadRequestError(
                f"Invalid value: {kind!r}. Only function tools are supported by this "
                "deployment (its provider has no native Responses API).",
                f"tools[{i}].type",
            )
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise BadRequestError("tools[].name must be a string", f"tools[{i}].name")
        fn = {
            k: tool[k]
            for k in ("name", "description", "parameters", "strict")
            if tool.get(k) is not None
        }
        out.append({"type": "function", "function": fn})
    return out


def _chat_tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    if isinstance(choice, str) or choice is None:
        return choice
    raise BadRequestError(
        "tool_choice must be 'auto', 'none', 'required' or a function", "tool_choice"
    )


def chat_body(body: Mapping[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The chat completions request that answers a Responses request."""
    out: dict[str, Any] = {"model": body["model"], "messages": messages}
    if body.get("stream"):
        out["stream"] = True
    for name in ("temperature", "top_p", "user", "seed", "top_logprobs", "service_tier"):
        if body.get(name) is not None:
            out[name] = body[name]
    if body.get("max_output_tokens") is not None:
        out["max_tokens"] = body["max_output_tokens"]
    if body.get("tools"):
        out["tools"] = _chat_tools(body["tools"])
        if body.get("parallel_tool_calls") is not None:
            out["parallel_tool_calls"] = body["parallel_tool_calls"]
    if body.get("tool_choice") is not None:
        out["tool_choice"] = _chat_tool_choice(body["tool_choice"])
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        out["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
        out["response_format"] = {"type": "json_object"}
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort"):
        out["reasoning_effort"] = reasoning["effort"]
    for name in GATEWAY_FIELDS:
        if name in body:
            out[name] = body[name]
    return out


def native_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """The request as a native Responses upstream takes it (no gateway-only fields)."""
    gateway = set(GATEWAY_FIELDS) - {"metadata"}
    out = {k: v for k, v in body.items() if k not in gateway}
    metadata = body.get("metadata")
    if isinstance(metadata, dict):
        # OpenAI's metadata holds strings only; LiteLLM's tags and session stay here.
        kept = {k: v for k, v in metadata.items() if isinstance(v, str)}
        out["metadata"] = kept
        if not kept:
            del out["metadata"]
    return out


# -- answers -----------------------------------------------------------------------------------
def usage_object(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def usage_from_response(raw: Any) -> Usage:
    """A Responses usage object (input/output tokens with their details) as a Usage."""
    return usage_from(raw, RESPONSES_USAGE)


def response_object(
    resp_id: str,
    created_at: int,
    body: Mapping[str, Any],
    *,
    output: list[dict[str, Any]],
    usage: Usage | None,
    status: str = "completed",
    incomplete_reason: str | None = None,
) -> dict[str, Any]:
    """A Response object as OpenAI returns it."""
    text = body.get("text") if isinstance(body.get("text"), dict) else None
    metadata = body.get("metadata")
    return {
        "id": resp_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": None,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body["model"],
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": text or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": usage_object(usage) if usage is not None else None,
        "user": body.get("user"),
        "metadata": {k: v for k, v in metadata.items() if isinstance(v, str)}
        if isinstance(metadata, dict)
        else {},
    }


_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def output_from_chat(message: Mapping[str, Any], ids: str) -> list[dict[str, Any]]:
    """A chat answer's message as Response output items (text, then function calls)."""
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p
        )
    calls = message.get("tool_calls") or []
    out: list[dict[str, Any]] = []
    if content or not calls:
        out.append(_message_item(f"msg_{ids}", content or ""))
    for i, tc in enumerate(calls):
        fn = tc.get("function") or {}
        out.append(
            {
                "type": "function_call",
                "id": f"fc_{ids}_{i}",
                "call_id": tc.get("id") or f"call_{ids}_{i}",
                "name": fn.get("name", ""),
                "arguments": fn.get("arguments") or "",
                "status": "completed",
            }
        )
    return out


def response_from_chat(
    chat: Mapping[str, Any], resp_id: str, created_at: int, body: Mapping[str, Any], usage: Usage
) -> dict[str, Any]:
    """A chat completion as the Response object of the Responses request it answered."""
    choices = chat.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    reason = _INCOMPLETE.get(str(choice.get("finish_reason")))
    return response_object(
        resp_id,
        created_at,
        body,
        output=output_from_chat(choice.get("message") or {}, resp_id.removeprefix("resp_")),
        usage=usage,
        status="incomplete" if reason else "completed",
        incomplete_reason=reason,
    )


def sse(kind: str, data: Mapping[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def error_event(message: str, code: str | None, seq: int, status: int) -> bytes:
    """The stream's error event; it carries OpenAI's error object, so SDKs raise it."""
    err = error_body(message, status, code=code)
    return sse(
        "error",
        {"type": "error", "sequence_number": seq, "code": code, "message": message, "param": None}
        | err,
    )


@dataclass
class StreamTranslator:
    """A chat completion stream, chunk by chunk, as the Responses event stream."""

    resp_id: str
    created_at: int
    body: Mapping[str, Any]
    seq: int = 0
    output: list[dict[str, Any]] = field(default_factory=list)
    _text: list[str] = field(default_factory=list)
    _message: int | None = None
    _calls: dict[int, int] = field(default_factory=dict)
    finish_reason: str | None = None

    @property
    def ids(self) -> str:
        return self.resp_id.removeprefix("resp_")

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return sse(kind, data)

    def snapshot(self, status: str, usage: Usage | None = None) -> dict[str, Any]:
        reason = _INCOMPLETE.get(str(self.finish_reason)) if status != "in_progress" else None
        return response_object(
            self.resp_id,
            self.created_at,
            self.body,
            output=self.output if status != "in_progress" else [],
            usage=usage,
            status="incomplete" if reason else status,
            incomplete_reason=reason,
        )

    def start(self) -> list[bytes]:
        response = self.snapshot("in_progress")
        return [
            self._event("response.created", response=response),
            self._event("response.in_progress", response=response),
        ]

    def _open_message(self) -> list[bytes]:
        self._message = len(self.output)
        item = _message_item(f"msg_{self.ids}", "", "in_progress")
        item["content"] = []
        self.output.append(item)
        part = {"type": "output_text", "text": "", "annotations": []}
        return [
            self._event("response.output_item.added", output_index=self._message, item=item),
            self._event(
                "response.content_part.added",
                item_id=item["id"],
                output_index=self._message,
                content_index=0,
                part=part,
            ),
        ]

    def feed(self, chunk: Mapping[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if isinstance(text, str) and text:
                if self._message is None:
                    out += self._open_message()
                assert self._message is not None
                self._text.append(text)
                out.append(
                    self._event(
                        "response.output_text.delta",
                        item_id=f"msg_{self.ids}",
                        output_index=self._message,
                        content_index=0,
                        delta=text,
                    )
                )
            for tc in delta.get("tool_calls") or ():
                index = tc.get("index", 0)
                fn = tc.get("function") or {}
                if index not in self._calls:
                    self._calls[index] = len(self.output)
                    item = {
                        "type": "function_call",
                        "id": f"fc_{self.ids}_{index}",
                        "call_id": tc.get("id") or f"call_{self.ids}_{index}",
                        "name": fn.get("name") or "",
                        "arguments": "",
                        "status": "in_progress",
                    }
                    self.output.append(item)
                    out.append(
                        self._event(
                            "response.output_item.added",
                            output_index=self._calls[index],
                            item=dict(item),
                        )
                    )
                item = self.output[self._calls[index]]
                if fn.get("name") and not item["name"]:
                    item["name"] = fn["name"]
                if fn.get("arguments"):
                    item["arguments"] += fn["arguments"]
                    out.append(
                        self._event(
                            "response.function_call_arguments.delta",
                            item_id=item["id"],
                            output_index=self._calls[index],
                            delta=fn["arguments"],
                        )
                    )
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return out

    def finish(self) -> list[bytes]:
        """Close every open item, in order (the completed event comes after, separately)."""
        out: list[bytes] = []
        if self._message is None and not self._calls:
            out += self._open_message()
        if self._message is not None:
            text = "".join(self._text)
            part = {"type": "output_text", "text": text, "annotations": []}
            item = self.output[self._message]
            item["content"] = [part]
            item["status"] = "completed"
            common = {"item_id": item["id"], "output_index": self._message, "content_index": 0}
            out += [
                self._event("response.output_text.done", **common, text=text),
                self._event("response.content_part.done", **common, part=part),
            ]
        for index, item in enumerate(self.output):
            if item["type"] == "function_call":
                item["status"] = "completed"
                out.append(
                    self._event(
                        "response.function_call_arguments.done",
                        item_id=item["id"],
                        output_index=index,
                        arguments=item["arguments"],
                    )
                )
            out.append(self._event("response.output_item.done", output_index=index, item=item))
        return out

    def completed(self, response: dict[str, Any]) -> bytes:
        kind = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
        return self._event(kind, response=response)

    def error(self, message: str, code: str | None, status: int) -> bytes:
        out = error_event(message, code, self.seq, status)
        self.seq += 1
        return out


def history_of(output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Output items as they continue a conversation (what the next turn's history holds)."""
    kept = []
    for item in output:
        if item.get("type") == "message":
            kept.append(
                {
                    "type": "message",
                    "id": item.get("id"),
                    "role": item.get("role", "assistant"),
                    "content": [
                        {"type": "output_text", "text": p.get("text", p.get("refusal", ""))}
                        for p in item.get("content") or ()
                        if isinstance(p, dict)
                    ],
                    "status": "completed",
                }
            )
        elif item.get("type") in ("function_call", "function_call_output", "reasoning"):
            kept.append(item)
    return kept
