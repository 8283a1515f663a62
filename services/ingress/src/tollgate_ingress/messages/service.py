"""Anthropic Messages calls through the Gateway (auth, limits, budgets, routing, events,
metrics): passed through unchanged to an Anthropic deployment (its answer and stream relayed
as they come, usage read for cost), or translated into a chat completions call for any other
deployment and its answer or stream translated back."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import orjson

from tollgate_ingress.auth import Identity
from tollgate_ingress.messages import bridge
from tollgate_ingress.parsing import ChatRequest, parse_chat_request
from tollgate_ingress.records import Call
from tollgate_ingress.routing import Deployment
from tollgate_ingress.service import (
    Answer,
    Failure,
    Gateway,
    StreamAnswer,
    StreamShape,
    canned_of,
)
from tollgate_ingress.upstream import Stream, anthropic, mock
from tollgate_ingress.usage import StreamAccumulator, Usage, usage_from

PATHS = ("/v1/messages", "/anthropic/v1/messages")
# Provider prefixes that speak the Messages API: their deployments get the request as it came.
NATIVE_PROVIDERS = frozenset({"anthropic"})
# Request fields the gateway reads, never sent to the provider.
_GATEWAY_ONLY = frozenset({"litellm_session_id", "tags", "mock_response", "litellm_metadata"})


def _with_bearer(headers: Mapping[str, str]) -> dict[str, str]:
    """The Anthropic SDK sends its key as `x-api-key`; the gateway reads a bearer token."""
    out = dict(headers)
    key = out.get("x-api-key")
    if key and "authorization" not in out:
        out["authorization"] = f"Bearer {key}"
    return out


def native_body(body: dict[str, Any]) -> dict[str, Any]:
    """The caller's Messages request as the provider gets it: without the gateway's fields, and
    with only the `metadata` Anthropic accepts (`user_id`)."""
    out = {k: v for k, v in body.items() if k not in _GATEWAY_ONLY}
    metadata = body.get("metadata")
    if isinstance(metadata, dict):
        if isinstance(metadata.get("user_id"), str):
            out["metadata"] = {"user_id": metadata["user_id"]}
        else:
            out.pop("metadata")
    return out


def _as_anthropic_error(answer: Answer) -> Answer:
    return replace(answer, body=bridge.error_from_openai(answer.status, answer.body))


class Messages:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    def _native(self, dep: Deployment, req: ChatRequest) -> bool:
        return dep.params.provider in NATIVE_PROVIDERS and canned_of(req, dep) is None

    async def create(
        self,
        path: str,
        raw: bytes,
        headers: Mapping[str, str],
        client_host: str | None,
        t_start: float,
    ) -> Answer | StreamAnswer:
        body: dict[str, Any] = {}
        headers = _with_bearer(headers)

        def prepare(identity: Identity, request_id: str) -> ChatRequest:
            given = bridge.load_body(raw)
            chat = bridge.chat_body(given)
            body.update(native_body(given))
            return parse_chat_request(orjson.dumps(chat), headers)

        opened = await self.gw.open_call(path, raw, headers, client_host, t_start, prepare)
        if isinstance(opened, Answer):
            return _as_anthropic_error(opened)
        go = self._stream if opened.request.stream else self._complete
        return await self.gw.run(opened, go(opened, body, headers, t_start))

    async def _complete(
        self, call: Call, body: dict[str, Any], headers: Mapping[str, str], t_start: float
    ) -> Answer:
        gw = self.gw
        chat_one = gw.chat_one(call)
        native = anthropic.passthrough(headers)

        async def one(dep: Deployment) -> tuple[bool, dict[str, Any]]:
            if self._native(dep, call.request):
                data = await native.chat(
                    gw.client, dep, body, gw._timeout(dep, False), call.traceparent
                )
                return True, data
            return False, await chat_one(dep)

        opened = await gw.attempt(call, t_start, one)
        if isinstance(opened, Answer):
            return _as_anthropic_error(opened)
        _dep, (is_native, data), t_up = opened
        upstream_s = time.perf_counter() - t_up
        if is_native:
            # Recorded in OpenAI's form like every other call; the caller gets Anthropic's own.
            chat = anthropic.response_of(data, json_mode=False)
            usage = usage_from(chat["usage"])
            return gw.answered(call, t_start, upstream_s, usage, data, logged=chat)
        message = bridge.message_from_chat(data, call.request.model)
        usage = usage_from(data.get("usage"))
        return gw.answered(call, t_start, upstream_s, usage, message, logged=data)

    async def _stream(
        self, call: Call, body: dict[str, Any], headers: Mapping[str, str], t_start: float
    ) -> Answer | StreamAnswer:
        gw = self.gw
        stream_one = gw.stream_one(call)
        native = anthropic.passthrough(headers)

        async def one(dep: Deployment) -> Stream | mock.MockStream:
            if self._native(dep, call.request):
                s = native.stream(gw.client, dep, body, gw._timeout(dep, True), call.traceparent)
                await s.open()
                return s
            return await stream_one(dep)

        opened = await gw.attempt(call, t_start, one)
        if isinstance(opened, Answer):
            return _as_anthropic_error(opened)
        _dep, source, t_up = opened
        shape: StreamShape
        if isinstance(source, anthropic.RawEventStream):
            shape = _RelayShape(source)
        else:
            shape = _MessagesShape(call.request.model)
        return StreamAnswer(gw._headers(call, None), gw.relay(call, source, t_start, t_up, shape))


class _MessagesShape(StreamShape):
    """A chat stream written as Anthropic's stream events."""

    def __init__(self, model: str) -> None:
        super().__init__()
        self.out = bridge.StreamTranslator(model)

    def feed(self, chunk: dict[str, Any]) -> list[bytes]:
        return self.out.feed(chunk)

    def finish(self) -> list[bytes]:
        return self.out.finish()

    def error(self, acc: StreamAccumulator, exc: Failure) -> tuple[Any, bytes]:
        return None, self.out.error(exc.status, exc.message)


class _RelayShape(StreamShape):
    """An Anthropic deployment's own events, relayed byte for byte as each arrives (its
    error event too); the chunks read from them only cost and record the call."""

    must_end = True

    def __init__(self, source: anthropic.RawEventStream) -> None:
        super().__init__()
        self.source = source

    def feed(self, chunk: dict[str, Any]) -> list[bytes]:
        return self.source.drain()

    def finish(self) -> list[bytes]:
        return self.source.drain()

    def response(self, acc: StreamAccumulator, usage: Usage) -> Any:
        return acc.response()

    def error(self, acc: StreamAccumulator, exc: Failure) -> tuple[Any, bytes]:
        relayed = b"".join(self.source.drain())
        if b"event: error" in relayed:
            return None, relayed  # the provider's error event, as it sent it
        return None, relayed + bridge.StreamTranslator.error(exc.status, exc.message)
