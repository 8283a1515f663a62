"""Legacy text completions: passed through to a deployment that serves /v1/completions, or
answered by a chat call through the Gateway (auth, limits, budgets, routing, events, metrics)
and written back as `text_completion` objects. `call_type` is `text_completion`."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import orjson

from tollgate_ingress.auth import Identity
from tollgate_ingress.completions import bridge
from tollgate_ingress.parsing import (
    GATEWAY_FIELDS,
    BadRequestError,
    ChatRequest,
    parse_chat_request,
)
from tollgate_ingress.records import Call
from tollgate_ingress.routing import Deployment
from tollgate_ingress.service import (
    Answer,
    Gateway,
    StreamAnswer,
    StreamShape,
)
from tollgate_ingress.upstream import Stream, mock
from tollgate_ingress.upstream import openai as upstream
from tollgate_ingress.upstream.openai import UpstreamError
from tollgate_ingress.usage import StreamAccumulator, Usage, usage_from

PATHS = ("/v1/completions", "/completions")
# LiteLLM's proxy records "atext_completion"; the shared event's vocabulary has only the
# synchronous spelling so far.
CALL_TYPE = "text_completion"


class Completions:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    def _native(self, dep: Deployment, req: ChatRequest) -> bool:
        return req.mock_response is None and bridge.is_native(dep.params, dep.model_info)

    async def create(
        self,
        path: str,
        raw: bytes,
        headers: Mapping[str, str],
        client_host: str | None,
        t_start: float,
    ) -> Answer | StreamAnswer:
        body: dict[str, Any] = {}

        def prepare(identity: Identity, request_id: str) -> ChatRequest:
            body.update(bridge.load_body(raw))
            try:
                chat = bridge.chat_body(body)
            except BadRequestError:
                group = self.gw.router.group(body["model"])
                if body.get("mock_response") is not None or not any(
                    bridge.is_native(d.params, d.model_info) for d in group
                ):
                    raise
                # Only a native deployment can answer: the call is recorded with the prompt
                # as text.
                chat = bridge.chat_body({**body, "prompt": str(body["prompt"])})
            req = parse_chat_request(orjson.dumps(chat), headers)
            return replace(req, call_type=CALL_TYPE)

        opened = await self.gw.open_call(path, raw, headers, client_host, t_start, prepare)
        if isinstance(opened, Answer):
            return opened
        go = self._stream if opened.request.stream else self._complete
        return await self.gw.run(opened, go(opened, body, t_start))

    def _native_body(self, body: dict[str, Any], stream: bool) -> dict[str, Any]:
        out = {k: v for k, v in body.items() if k not in GATEWAY_FIELDS}
        if stream:  # usage is how a streamed call is costed: always ask
            out["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return out

    def _bridgeable(self, body: dict[str, Any]) -> None:
        if bridge.prompt_text(body) is None:
            raise UpstreamError(
                400,
                "prompt: token ids or several prompts need a native completions deployment",
                code="prompt",
            )

    async def _complete(self, call: Call, body: dict[str, Any], t_start: float) -> Answer:
        gw = self.gw
        chat_one = gw.chat_one(call)

        async def one(dep: Deployment) -> tuple[bool, dict[str, Any]]:
            if self._native(dep, call.request):
                data = await upstream.chat(
                    gw.client, dep, self._native_body(body, False), gw._timeout(dep, False),
                    call.traceparent, "/completions",
                )  # fmt: skip
                return True, data
            self._bridgeable(body)
            return False, await chat_one(dep)

        opened = await gw.attempt(call, t_start, one)
        if isinstance(opened, Answer):
            return opened
        _dep, (native, data), t_up = opened
        upstream_s = time.perf_counter() - t_up
        echo = bridge.prompt_text(body) if body.get("echo") else None
        response = data if native else bridge.completion_from_chat(data, echo)
        return gw.answered(call, t_start, upstream_s, usage_from(data.get("usage")), response)

    async def _stream(
        self, call: Call, body: dict[str, Any], t_start: float
    ) -> Answer | StreamAnswer:
        gw = self.gw
        stream_one = gw.stream_one(call)

        async def one(dep: Deployment) -> tuple[bool, Stream | mock.MockStream]:
            if self._native(dep, call.request):
                s = upstream.ChatStream(
                    gw.client, dep, self._native_body(body, True), gw._timeout(dep, True),
                    call.traceparent, "/completions",
                )  # fmt: skip
                await s.open()
                return True, s
            self._bridgeable(body)
            return False, await stream_one(dep)

        opened = await gw.attempt(call, t_start, one)
        if isinstance(opened, Answer):
            return opened
        _dep, (native, source), t_up = opened
        shape = _TextShape(call.request.client_wants_usage, native)
        return StreamAnswer(gw._headers(call, None), gw.relay(call, source, t_start, t_up, shape))


class _TextShape(StreamShape):
    """A chat stream written as text completion chunks (a native one relayed as it is)."""

    def __init__(self, wants_usage: bool, native: bool) -> None:
        super().__init__(wants_usage)
        self.native = native
        self.text: list[str] = []

    def feed(self, chunk: dict[str, Any]) -> list[bytes]:
        if self.native:
            for c in chunk.get("choices") or ():
                if isinstance(c, dict) and isinstance(c.get("text"), str):
                    self.text.append(c["text"])
        else:
            chunk = bridge.chunk_from_chat(chunk)
        return super().feed(chunk)

    def response(self, acc: StreamAccumulator, usage: Usage) -> Any:
        chat = acc.response()
        if self.native:
            chat["choices"][0]["message"]["content"] = "".join(self.text)
        if acc.usage is not None:
            chat["usage"] = {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
            }
        return bridge.completion_from_chat(chat)

    def partial(self, acc: StreamAccumulator) -> Any:
        return self.response(acc, acc.usage or Usage())
