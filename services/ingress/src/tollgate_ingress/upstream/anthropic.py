"""Anthropic's Messages API (`anthropic/<model>`): chat completions to Messages and back,
streamed events to chunks, prompt-caching usage, errors (529 overloaded included)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import orjson
from httpx_sse import EventSource

from tollgate_ingress.routing import Deployment
from tollgate_ingress.upstream.openai import UpstreamError, UpstreamUnreachableError
from tollgate_ingress.upstream.translating import (
    CHAT_PATH,
    ChunkTranslator,
    Outgoing,
    TranslatedStream,
    TranslatingAdapter,
    completion,
    data_url,
    json_schema_of,
    not_translated,
    openai_usage,
    parse_arguments,
    stop_list,
)

DEFAULT_API_BASE = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
# Messages requires max_tokens; LiteLLM sends this when the caller sets none.
DEFAULT_MAX_TOKENS = 4096
# JSON mode rides on a forced tool whose input is the answer (as LiteLLM does).
JSON_TOOL = "json_tool_call"

FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def _image(url: str) -> dict[str, Any]:
    inline = data_url(url)
    if inline is not None:
        media_type, data = inline
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": url}}


def _blocks(content: Any) -> list[dict[str, Any]]:
    """OpenAI content (a string or parts) as Anthropic content blocks."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    out: list[dict[str, Any]] = []
    for part in content or ():
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        block: dict[str, Any]
        if kind == "text":
            block = {"type": "text", "text": part.get("text", "")}
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            block = _image(str(url))
        elif kind == "file":
            f = part.get("file") or {}
            inline = data_url(str(f.get("file_data", "")))
            if inline is None:
                raise not_translated("anthropic", "a file part without file_data")
            block = {
                "type": "document",
                "source": {"type": "base64", "media_type": inline[0], "data": inline[1]},
            }
        else:
            raise not_translated("anthropic", f"a content part of type {kind!r}")
        if "cache_control" in part:
            block["cache_control"] = part["cache_control"]
        out.append(block)
    return out


def _tool_result(m: dict[str, Any]) -> dict[str, Any]:
    content = m.get("content")
    result: dict[str, Any] = {
        "type": "tool_result",
        "tool_use_id": m.get("tool_call_id", ""),
        "content": content if isinstance(content, str) else _blocks(content),
    }
    return result


def messages_of(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, messages): system/developer messages lifted out, tool results folded
    into user turns, consecutive turns of one role merged (Messages alternates roles)."""
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role")
        if role in ("system", "developer"):
            system.extend(_blocks(m.get("content")))
            continue
        if role == "tool":
            role, blocks = "user", [_tool_result(m)]
        elif role == "assistant":
            blocks = _blocks(m.get("content"))
            for tc in m.get("tool_calls") or ():
                fn = tc.get("function") or {}
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": tc.get("id", ""),
                        "name": fn.get("name", ""),
                        "input": parse_arguments(fn.get("arguments")),
                    }
                )
        elif role == "user":
            blocks = _blocks(m.get("content"))
        else:
            raise not_translated("anthropic", f"a message with role {role!r}")
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return system, out


def _tools(tools: Any) -> list[dict[str, Any]]:
    out = []
    for t in tools or ():
        fn = t.get("function") if isinstance(t, dict) else None
        if t.get("type") != "function" or not isinstance(fn, dict):
            raise not_translated("anthropic", f"a tool of type {t.get('type')!r}")
        tool: dict[str, Any] = {
            "name": fn.get("name", ""),
            "input_schema": fn.get("parameters") or {"type": "object", "properties": {}},
        }
        if fn.get("description"):
            tool["description"] = fn["description"]
        if "cache_control" in t:
            tool["cache_control"] = t["cache_control"]
        out.append(tool)
    return out


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    out: dict[str, Any] | None
    if choice == "auto":
        out = {"type": "auto"}
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        out = {"type": "none"}
    elif isinstance(choice, dict):
        out = {"type": "tool", "name": (choice.get("function") or {}).get("name", "")}
    else:
        out = None
    if parallel is False:
        out = {**(out or {"type": "auto"}), "disable_parallel_tool_use": True}
    return out


def request_body(model: str, body: dict[str, Any]) -> dict[str, Any]:
    """A chat completions body as a Messages request."""
    system, messages = messages_of(body.get("messages") or [])
    out: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": body.get("max_completion_tokens")
        or body.get("max_tokens")
        or DEFAULT_MAX_TOKENS,
    }
    if system:
        out["system"] = system
    for key in ("temperature", "top_p", "top_k"):
        if body.get(key) is not None:
            out[key] = body[key]
    stops = stop_list(body.get("stop"))
    if stops:
        out["stop_sequences"] = stops
    tools = _tools(body.get("tools"))
    choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
    schema = json_schema_of(body.get("response_format"))
    if schema is not None:
        tools.append({"name": JSON_TOOL, "description": "Answer in JSON.", "input_schema": schema})
        choice = {"type": "tool", "name": JSON_TOOL}
    if tools:
        out["tools"] = tools
    if choice is not None:
        out["tool_choice"] = choice
    if isinstance(body.get("user"), str):
        out["metadata"] = {"user_id": body["user"]}
    if isinstance(body.get("thinking"), dict):
        out["thinking"] = body["thinking"]
    if body.get("stream"):
        out["stream"] = True
    return out


def usage_of(u: dict[str, Any]) -> dict[str, Any]:
    """Anthropic's usage in OpenAI's terms: prompt = uncached + read + written input."""
    fresh = int(u.get("input_tokens") or 0)
    read = int(u.get("cache_read_input_tokens") or 0)
    written = int(u.get("cache_creation_input_tokens") or 0)
    return openai_usage(fresh + read + written, int(u.get("output_tokens") or 0), read, written)


def message_of(content: list[dict[str, Any]], json_mode: bool) -> dict[str, Any]:
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in content:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "thinking":
            thinking.append(block.get("thinking", ""))
        elif kind == "tool_use":
            if json_mode and block.get("name") == JSON_TOOL:
                texts.append(orjson.dumps(block.get("input")).decode())
                continue
            calls.append(
                {
                    "id": block.get("id", ""),
                    "type": "function",
                    "function": {
                        "name": block.get("name", ""),
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    return message


def response_of(data: dict[str, Any], json_mode: bool) -> dict[str, Any]:
    message = message_of(data.get("content") or [], json_mode)
    finish = FINISH.get(str(data.get("stop_reason")), "stop")
    if json_mode and finish == "tool_calls" and "tool_calls" not in message:
        finish = "stop"
    return completion(
        str(data.get("model", "")), message, finish, usage_of(data.get("usage") or {}),
        f"chatcmpl-{data['id']}" if data.get("id") else None,
    )  # fmt: skip


class MessagesTranslator(ChunkTranslator):
    """Messages stream events (message_start, content_block_*, message_delta, message_stop)
    as chunks; tool_use blocks become tool_call deltas numbered in order."""

    def __init__(self, model: str, json_mode: bool) -> None:
        super().__init__(model)
        self.json_mode = json_mode
        self.usage: dict[str, Any] = {}
        self.finish: str | None = None
        self.tools: dict[int, int] = {}  # content block index -> tool call index
        self.json_blocks: set[int] = set()
        self.done = False

    def feed(self, event: Any) -> list[dict[str, Any]]:
        kind = event.get("type")
        if kind == "message_start":
            msg = event.get("message") or {}
            self.model = msg.get("model") or self.model
            if msg.get("id"):
                self.id = f"chatcmpl-{msg['id']}"
            self.usage.update(msg.get("usage") or {})
            return [self.chunk({"content": ""})]
        if kind == "content_block_start":
            block = event.get("content_block") or {}
            index = int(event.get("index", 0))
            if block.get("type") == "tool_use":
                if self.json_mode and block.get("name") == JSON_TOOL:
                    self.json_blocks.add(index)
                    return []
                n = self.tools[index] = len(self.tools)
                call = {
                    "index": n,
                    "id": block.get("id", ""),
                    "type": "function",
                    "function": {"name": block.get("name", ""), "arguments": ""},
                }
                return [self.chunk({"tool_calls": [call]})]
            if block.get("type") == "text" and block.get("text"):
                return [self.chunk({"content": block["text"]})]
            return []
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            index = int(event.get("index", 0))
            dkind = delta.get("type")
            if dkind == "text_delta":
                return [self.chunk({"content": delta.get("text", "")})]
            if dkind == "thinking_delta":
                return [self.chunk({"reasoning_content": delta.get("thinking", "")})]
            if dkind == "input_json_delta":
                partial = delta.get("partial_json", "")
                if index in self.json_blocks:
                    return [self.chunk({"content": partial})] if partial else []
                n = self.tools.get(index, 0)
                return [
                    self.chunk({"tool_calls": [{"index": n, "function": {"arguments": partial}}]})
                ]
            return []
        if kind == "message_delta":
            reason = (event.get("delta") or {}).get("stop_reason")
            self.finish = FINISH.get(str(reason), "stop")
            if self.json_mode and self.finish == "tool_calls" and not self.tools:
                self.finish = "stop"
            self.usage.update(event.get("usage") or {})
            return []
        if kind == "message_stop":
            self.done = True
            return [self.chunk({}, self.finish or "stop"), self.usage_chunk(usage_of(self.usage))]
        if kind == "error":
            err = event.get("error") or {}
            status = 529 if err.get("type") == "overloaded_error" else 502
            raise UpstreamError(status, str(err.get("message") or err), event, err.get("type"))
        return []  # ping

    def end(self) -> list[dict[str, Any]]:
        if not self.done:
            raise UpstreamUnreachableError(
                "anthropic closed the stream before message_stop", timed_out=False
            )
        return []


class AnthropicAdapter(TranslatingAdapter):
    provider = "anthropic"

    def url(self, dep: Deployment) -> str:
        base = (dep.params.api_base or DEFAULT_API_BASE).rstrip("/")
        return base + ("/messages" if base.endswith("/v1") else "/v1/messages")

    def headers(self, dep: Deployment) -> dict[str, str]:
        h = {"content-type": "application/json", "anthropic-version": API_VERSION}
        if dep.params.api_key:
            h["x-api-key"] = dep.params.api_key
        return h

    async def prepare(self, dep: Deployment, body: dict[str, Any], stream: bool) -> Outgoing:
        out = request_body(dep.params.upstream_model, {**body, "stream": stream})
        return Outgoing(self.url(dep), self.headers(dep), orjson.dumps(out))

    def response(
        self, data: dict[str, Any], dep: Deployment, body: dict[str, Any]
    ) -> dict[str, Any]:
        return response_of(data, json_schema_of(body.get("response_format")) is not None)

    def translator(self, dep: Deployment, body: dict[str, Any]) -> MessagesTranslator:
        json_mode = json_schema_of(body.get("response_format")) is not None
        return MessagesTranslator(dep.params.upstream_model, json_mode)


ADAPTER = AnthropicAdapter()


# -- passthrough: an Anthropic Messages request sent as it came -------------------------------
# Headers of the caller's that shape what Anthropic answers (beta features, API version).
PASSED_HEADERS = ("anthropic-version", "anthropic-beta")


class NativeMessages(AnthropicAdapter):
    """A Messages request passed through unchanged but for the deployment's model and key (the
    `/v1/messages` route on an Anthropic deployment): the answer comes back as Anthropic sent it,
    the stream as its raw events; usage is read from both for cost and events."""

    def __init__(self, caller_headers: dict[str, str]) -> None:
        self.caller_headers = caller_headers

    def headers(self, dep: Deployment) -> dict[str, str]:
        return {**super().headers(dep), **self.caller_headers}

    async def prepare(self, dep: Deployment, body: dict[str, Any], stream: bool) -> Outgoing:
        out = {**body, "model": dep.params.upstream_model}
        if stream:
            out["stream"] = True
        else:
            out.pop("stream", None)
        return Outgoing(self.url(dep), self.headers(dep), orjson.dumps(out))

    def response(
        self, data: dict[str, Any], dep: Deployment, body: dict[str, Any]
    ) -> dict[str, Any]:
        return data

    def stream(
        self,
        client: httpx.AsyncClient,
        dep: Deployment,
        body: dict[str, Any],
        timeout: float,
        traceparent: str | None,
        path: str = CHAT_PATH,
    ) -> RawEventStream:
        return RawEventStream(self, client, dep, body, timeout, traceparent, path)


def passthrough(headers: Mapping[str, str]) -> NativeMessages:
    """The passthrough adapter for one call, carrying the caller's Anthropic headers."""
    return NativeMessages({k: v for k in PASSED_HEADERS if (v := headers.get(k))})


class RawEventStream(TranslatedStream):
    """Anthropic's stream, each event kept as the bytes to relay (`drain()`) and read as OpenAI
    chunks for usage and the recorded answer. Every event yields at least one chunk (an empty
    one when it translates to none), so its bytes go out as it arrives."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._raw: list[bytes] = []

    def drain(self) -> list[bytes]:
        out, self._raw = self._raw, []
        return out

    async def chunks(self) -> AsyncIterator[dict[str, Any] | None]:
        assert self._resp is not None
        reader = MessagesTranslator(self._dep.params.upstream_model, json_mode=False)
        try:
            async for sse in EventSource(self._resp).aiter_sse():
                if not sse.data:
                    continue
                self._raw.append(f"event: {sse.event}\ndata: {sse.data}\n\n".encode())
                try:
                    event = orjson.loads(sse.data)
                except orjson.JSONDecodeError:
                    event = None
                chunks = reader.feed(event) if isinstance(event, dict) else []
                for chunk in chunks or [{"choices": []}]:
                    yield chunk
        except httpx.HTTPError as exc:
            raise self._adapter.unreachable(exc, self._url) from exc
        reader.end()
        yield None
