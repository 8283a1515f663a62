"""Amazon Bedrock's Converse API (`bedrock/<model id>`, `bedrock/converse/<model id>`): chat
completions to Converse and back, ConverseStream's binary event stream to chunks, signed with
SigV4 by botocore from `aws_*` params or the AWS credential chain."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials
from botocore.eventstream import EventStreamBuffer
from botocore.session import Session

from tollgate_ingress.routing import Deployment
from tollgate_ingress.upstream.openai import UpstreamError, UpstreamUnreachableError
from tollgate_ingress.upstream.translating import (
    ChunkTranslator,
    Outgoing,
    TranslatingAdapter,
    completion,
    content_parts,
    data_url,
    error_message,
    json_schema_of,
    not_translated,
    openai_usage,
    parse_arguments,
    stop_list,
    text_of,
)
from tollgate_ingress.upstream.translating import param as param_of

DEFAULT_REGION = "us-east-1"
JSON_TOOL = "json_tool_call"
IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/webp": "webp"}
FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "content_filtered": "content_filter",
    "guardrail_intervened": "content_filter",
}
# Bedrock's exception names and the status each stands for when one arrives mid-stream.
STREAM_EXCEPTIONS = {
    "throttlingException": 429,
    "serviceUnavailableException": 503,
    "modelStreamErrorException": 424,
    "validationException": 400,
    "internalServerException": 500,
}


def _image(url: str) -> dict[str, Any]:
    inline = data_url(url)
    if inline is None or inline[0] not in IMAGE_FORMATS:
        raise not_translated("bedrock", "an image by URL (Converse takes bytes: send a data: URL)")
    return {"image": {"format": IMAGE_FORMATS[inline[0]], "source": {"bytes": inline[1]}}}


def _content(content: Any) -> list[dict[str, Any]]:
    return content_parts(content, "bedrock", _image)


def messages_of(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role")
        if role in ("system", "developer"):
            system.extend(_content(m.get("content")))
            continue
        if role == "tool":
            content = m.get("content")
            text = content if isinstance(content, str) else text_of(content)
            role = "user"
            blocks = [
                {
                    "toolResult": {
                        "toolUseId": m.get("tool_call_id", ""),
                        "content": [{"text": text}],
                    }
                }
            ]
        elif role == "assistant":
            blocks = _content(m.get("content"))
            for tc in m.get("tool_calls") or ():
                fn = tc.get("function") or {}
                blocks.append(
                    {
                        "toolUse": {
                            "toolUseId": tc.get("id", ""),
                            "name": fn.get("name", ""),
                            "input": parse_arguments(fn.get("arguments")),
                        }
                    }
                )
        elif role == "user":
            blocks = _content(m.get("content"))
        else:
            raise not_translated("bedrock", f"a message with role {role!r}")
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return system, out


def request_body(body: dict[str, Any]) -> dict[str, Any]:
    """A chat completions body as a Converse request (the model id is in the URL)."""
    system, messages = messages_of(body.get("messages") or [])
    out: dict[str, Any] = {"messages": messages}
    if system:
        out["system"] = system
    config: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens:
        config["maxTokens"] = max_tokens
    if body.get("temperature") is not None:
        config["temperature"] = body["temperature"]
    if body.get("top_p") is not None:
        config["topP"] = body["top_p"]
    stops = stop_list(body.get("stop"))
    if stops:
        config["stopSequences"] = stops
    if config:
        out["inferenceConfig"] = config
    tools: list[dict[str, Any]] = []
    for t in body.get("tools") or ():
        fn = t.get("function") if isinstance(t, dict) else None
        if t.get("type") != "function" or not isinstance(fn, dict):
            raise not_translated("bedrock", f"a tool of type {t.get('type')!r}")
        spec: dict[str, Any] = {
            "name": fn.get("name", ""),
            "inputSchema": {"json": fn.get("parameters") or {"type": "object", "properties": {}}},
        }
        if fn.get("description"):
            spec["description"] = fn["description"]
        tools.append({"toolSpec": spec})
    choice: dict[str, Any] | None = None
    tc = body.get("tool_choice")
    if tc == "auto":
        choice = {"auto": {}}
    elif tc == "required":
        choice = {"any": {}}
    elif isinstance(tc, dict):
        choice = {"tool": {"name": (tc.get("function") or {}).get("name", "")}}
    elif tc == "none":
        tools = []  # Converse has no "none": offer no tools
    schema = json_schema_of(body.get("response_format"))
    if schema is not None:
        tools.append(
            {
                "toolSpec": {
                    "name": JSON_TOOL,
                    "description": "Answer in JSON.",
                    "inputSchema": {"json": schema},
                }
            }
        )
        choice = {"tool": {"name": JSON_TOOL}}
    if tools:
        out["toolConfig"] = {"tools": tools, **({"toolChoice": choice} if choice else {})}
    return out


def usage_of(u: dict[str, Any]) -> dict[str, Any]:
    fresh = int(u.get("inputTokens") or 0)
    read = int(u.get("cacheReadInputTokens") or 0)
    written = int(u.get("cacheWriteInputTokens") or 0)
    return openai_usage(fresh + read + written, int(u.get("outputTokens") or 0), read, written)


def response_of(data: dict[str, Any], model: str, json_mode: bool) -> dict[str, Any]:
    content = ((data.get("output") or {}).get("message") or {}).get("content") or []
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in content:
        if "text" in block:
            texts.append(block["text"])
        elif "toolUse" in block:
            use = block["toolUse"]
            if json_mode and use.get("name") == JSON_TOOL:
                texts.append(orjson.dumps(use.get("input")).decode())
                continue
            calls.append(
                {
                    "id": use.get("toolUseId", ""),
                    "type": "function",
                    "function": {
                        "name": use.get("name", ""),
                        "arguments": orjson.dumps(use.get("input") or {}).decode(),
                    },
                }
            )
        elif "reasoningContent" in block:
            reasoning.append(
                ((block["reasoningContent"] or {}).get("reasoningText") or {}).get("text", "")
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    finish = FINISH.get(str(data.get("stopReason")), "stop")
    if finish == "tool_calls" and not calls:
        finish = "stop"
    return completion(model, message, finish, usage_of(data.get("usage") or {}))


class ConverseStreamTranslator(ChunkTranslator):
    """ConverseStream events (messageStart, contentBlockStart/Delta/Stop, messageStop,
    metadata) as chunks; usage arrives in metadata, after messageStop."""

    def __init__(self, model: str, json_mode: bool) -> None:
        super().__init__(model)
        self.json_mode = json_mode
        self.tools: dict[int, int] = {}
        self.json_blocks: set[int] = set()
        self.finish: str | None = None
        self.usage: dict[str, Any] | None = None

    def feed(self, event: Any) -> list[dict[str, Any]]:
        kind, payload = event
        if kind == "messageStart":
            return [self.chunk({"content": ""})]
        if kind == "contentBlockStart":
            index = int(payload.get("contentBlockIndex", 0))
            use = (payload.get("start") or {}).get("toolUse")
            if use is None:
                return []
            if self.json_mode and use.get("name") == JSON_TOOL:
                self.json_blocks.add(index)
                return []
            n = self.tools[index] = len(self.tools)
            call = {
                "index": n,
                "id": use.get("toolUseId", ""),
                "type": "function",
                "function": {"name": use.get("name", ""), "arguments": ""},
            }
            return [self.chunk({"tool_calls": [call]})]
        if kind == "contentBlockDelta":
            index = int(payload.get("contentBlockIndex", 0))
            delta = payload.get("delta") or {}
            if "text" in delta:
                return [self.chunk({"content": delta["text"]})]
            if "toolUse" in delta:
                partial = (delta["toolUse"] or {}).get("input", "")
                if index in self.json_blocks:
                    return [self.chunk({"content": partial})] if partial else []
                n = self.tools.get(index, 0)
                return [
                    self.chunk({"tool_calls": [{"index": n, "function": {"arguments": partial}}]})
                ]
            if "reasoningContent" in delta:
                text = (delta["reasoningContent"] or {}).get("text", "")
                return [self.chunk({"reasoning_content": text})] if text else []
            return []
        if kind == "messageStop":
            finish = FINISH.get(str(payload.get("stopReason")), "stop")
            self.finish = "stop" if finish == "tool_calls" and not self.tools else finish
            return [self.chunk({}, self.finish)]
        if kind == "metadata":
            self.usage = payload.get("usage") or {}
            return []
        return []

    def end(self) -> list[dict[str, Any]]:
        if self.finish is None:
            raise UpstreamUnreachableError(
                "bedrock closed the stream before messageStop", timed_out=False
            )
        return [self.usage_chunk(usage_of(self.usage or {}))]


class BedrockAdapter(TranslatingAdapter):
    provider = "bedrock"

    def __init__(self) -> None:
        self._chain: Credentials | None = None

    def region(self, dep: Deployment) -> str:
        return str(param_of(dep, "aws_region_name") or dep.params.region_name or DEFAULT_REGION)

    def model_id(self, dep: Deployment) -> str:
        model = dep.params.upstream_model
        return model.removeprefix("converse/")

    def url(self, dep: Deployment, stream: bool) -> str:
        base = dep.params.api_base or f"https://bedrock-runtime.{self.region(dep)}.amazonaws.com"
        op = "converse-stream" if stream else "converse"
        # ':' stays as it is: the HTTP client would send `%3A` decoded, and the path signed
        # must be the path sent. '/' (in ARNs) is escaped, as it must be.
        return f"{base.rstrip('/')}/model/{quote(self.model_id(dep), safe=':')}/{op}"

    async def credentials(self, dep: Deployment) -> ReadOnlyCredentials:
        key = param_of(dep, "aws_access_key_id")
        secret = param_of(dep, "aws_secret_access_key")
        if key and secret:
            return ReadOnlyCredentials(str(key), str(secret), param_of(dep, "aws_session_token"))
        if self._chain is None:
            # The chain (env, profile, SSO, container, instance metadata) may do I/O.
            self._chain = await asyncio.to_thread(Session().get_credentials)
        if self._chain is None:
            raise UpstreamError(401, "bedrock: no AWS credentials (aws_* params or the chain)")
        frozen: ReadOnlyCredentials = await asyncio.to_thread(self._chain.get_frozen_credentials)
        return frozen

    async def prepare(self, dep: Deployment, body: dict[str, Any], stream: bool) -> Outgoing:
        url = self.url(dep, stream)
        content = orjson.dumps(request_body(body))
        creds = await self.credentials(dep)
        request = AWSRequest(
            method="POST", url=url, data=content, headers={"content-type": "application/json"}
        )
        SigV4Auth(creds, "bedrock", self.region(dep)).add_auth(request)
        return Outgoing(url, dict(request.headers.items()), content)

    def response(
        self, data: dict[str, Any], dep: Deployment, body: dict[str, Any]
    ) -> dict[str, Any]:
        json_mode = json_schema_of(body.get("response_format")) is not None
        return response_of(data, self.model_id(dep), json_mode)

    def translator(self, dep: Deployment, body: dict[str, Any]) -> ConverseStreamTranslator:
        json_mode = json_schema_of(body.get("response_format")) is not None
        return ConverseStreamTranslator(self.model_id(dep), json_mode)

    def error(self, status: int, raw: bytes, headers: Mapping[str, str]) -> UpstreamError:
        message, body, _code = error_message(raw, f"bedrock answered {status}")
        kind = headers.get("x-amzn-errortype", "").split(":", 1)[0] or None
        return UpstreamError(status, message, body, kind)

    async def events(self, resp: httpx.Response) -> AsyncIterator[Any]:
        """application/vnd.amazon.eventstream messages, decoded by botocore: (event type,
        payload); an exception message raises with its status."""
        buffer = EventStreamBuffer()
        async for raw in resp.aiter_bytes():
            buffer.add_data(raw)
            for message in buffer:
                headers = message.headers
                payload = orjson.loads(message.payload) if message.payload else {}
                if headers.get(":message-type") == "exception":
                    kind = str(headers.get(":exception-type", "exception"))
                    text = payload.get("message") if isinstance(payload, dict) else None
                    raise UpstreamError(
                        STREAM_EXCEPTIONS.get(kind, 502), str(text or kind), payload, kind
                    )
                if headers.get(":message-type") == "error":
                    raise UpstreamError(
                        502, str(headers.get(":error-message", "stream error")), payload
                    )
                yield str(headers.get(":event-type", "")), payload


ADAPTER = BedrockAdapter()
