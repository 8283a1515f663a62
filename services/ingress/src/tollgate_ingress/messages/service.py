"""Anthropic Messages calls: translated into a chat completions call that goes through the
Gateway unchanged (auth, limits, budgets, routing, events, metrics), its answer or stream
translated back."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any, cast

import orjson

from tollgate_ingress.messages import bridge
from tollgate_ingress.parsing import BadRequestError
from tollgate_ingress.service import Answer, Gateway, StreamAnswer

PATHS = ("/v1/messages", "/anthropic/v1/messages")
CHAT_PATH = "/v1/chat/completions"


def _with_bearer(headers: Mapping[str, str]) -> dict[str, str]:
    """The Anthropic SDK sends its key as `x-api-key`; the gateway reads a bearer token."""
    out = dict(headers)
    key = out.get("x-api-key")
    if key and "authorization" not in out:
        out["authorization"] = f"Bearer {key}"
    return out


class Messages:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    async def create(
        self,
        path: str,
        raw: bytes,
        headers: Mapping[str, str],
        client_host: str | None,
        t_start: float,
    ) -> Answer | StreamAnswer:
        try:
            chat = bridge.chat_body(raw)
        except BadRequestError as exc:
            body = orjson.dumps(
                {
                    "type": "error",
                    "error": {"type": "invalid_request_error", "message": exc.message},
                }
            )
            return Answer(400, body, {}, None)
        model = chat["model"]
        result = await self.gw.answer(
            CHAT_PATH, orjson.dumps(chat), _with_bearer(headers), client_host, t_start
        )
        if isinstance(result, StreamAnswer):
            return StreamAnswer(result.headers, self._stream(result.body, model))
        if result.status != 200:
            return Answer(
                result.status,
                bridge.error_from_openai(result.status, result.body),
                result.headers,
                result.after,
            )
        message = bridge.message_from_chat(orjson.loads(result.body), model)
        return Answer(200, orjson.dumps(message), result.headers, result.after)

    async def _stream(self, chunks: AsyncIterator[bytes], model: str) -> AsyncIterator[bytes]:
        out = bridge.StreamTranslator(model)
        try:
            async for raw in chunks:
                for line in raw.split(b"\n"):
                    if not line.startswith(b"data: "):
                        continue
                    payload = line.removeprefix(b"data: ")
                    if payload == b"[DONE]":
                        for b in out.finish():
                            yield b
                        continue
                    data: Any = orjson.loads(payload)
                    if isinstance(data, dict) and "error" in data and not data.get("choices"):
                        err = data["error"] if isinstance(data["error"], dict) else {}
                        yield out.error(502, str(err.get("message", data["error"])))
                        continue
                    for b in out.feed(data):
                        yield b
        finally:
            # The chat relay records the call when it closes (a client gone mid-stream too).
            await cast(AsyncGenerator[bytes, None], chunks).aclose()
