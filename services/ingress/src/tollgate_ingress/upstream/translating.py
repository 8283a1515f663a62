"""The HTTP exchange every translating adapter shares: send the provider's request, turn its
answer, its stream and its errors into OpenAI's, each provider supplying the translation.

Exceptions are `openai.UpstreamError` (the provider answered an error status; its status and
message kept) and `openai.UpstreamUnreachableError`, so the router cools down and falls back
from these deployments as from any other.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from httpx_sse import EventSource

from tollgate_ingress.routing import Deployment
from tollgate_ingress.upstream.http import UnreachableError, UpstreamClient, post, unreachable
from tollgate_ingress.upstream.openai import UpstreamError, UpstreamUnreachableError

CHAT_PATH = "/chat/completions"


@dataclass(frozen=True)
class Outgoing:
    """A provider request ready to send."""

    url: str
    headers: dict[str, str]
    content: bytes


class ChunkTranslator:
    """Turns one provider stream's events into OpenAI chunks; `end()` gives the last ones
    (finish reason, then usage)."""

    def __init__(self, model: str) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.model = model
        self.created = int(time.time())
        self.started = False

    def chunk(
        self, delta: dict[str, Any] | None = None, finish_reason: str | None = None
    ) -> dict[str, Any]:
        if not self.started:
            self.started = True
            delta = {"role": "assistant", **(delta or {})}
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish_reason}],
        }

    def usage_chunk(self, usage: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage,
        }

    def feed(self, event: Any) -> list[dict[str, Any]]:
        raise NotImplementedError

    def end(self) -> list[dict[str, Any]]:
        return []


def completion(
    model: str,
    message: dict[str, Any],
    finish_reason: str | None,
    usage: dict[str, Any],
    response_id: str | None = None,
) -> dict[str, Any]:
    """An OpenAI chat completion around one translated message."""
    return {
        "id": response_id or f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": usage,
    }


def openai_usage(
    prompt: int, completion_tokens: int, cached: int = 0, cache_write: int = 0, reasoning: int = 0
) -> dict[str, Any]:
    """OpenAI's usage object; `prompt` counts every input token, cached and written ones too
    (LiteLLM's convention), the details say how many of them were which."""
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }
    if cache_write:
        usage["prompt_tokens_details"]["cache_creation_tokens"] = cache_write
        usage["cache_creation_input_tokens"] = cache_write
    if cached:
        usage["cache_read_input_tokens"] = cached
    return usage


def parse_arguments(arguments: Any) -> Any:
    """A tool call's `arguments` (a JSON string in OpenAI's format) as an object."""
    if isinstance(arguments, str):
        try:
            return orjson.loads(arguments) if arguments.strip() else {}
        except orjson.JSONDecodeError:
            return {"arguments": arguments}
    return arguments if arguments is not None else {}


def text_of(content: Any) -> str:
    """The text of an OpenAI message content (a string, or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a `data:` URL; None for any other URL."""
    if not url.startswith("data:") or "," not in url:
        return None
    head, data = url[5:].split(",", 1)
    media_type = head.split(";", 1)[0] or "application/octet-stream"
    return media_type, data


def content_parts(
    content: Any, provider: str, image: Callable[[str], dict[str, Any]]
) -> list[dict[str, Any]]:
    """OpenAI message content as a provider's `{"text": …}` parts, each image part mapped by
    `image(url)`; any other part type is refused as not translated."""
    if isinstance(content, str):
        return [{"text": content}] if content else []
    out: list[dict[str, Any]] = []
    for part in content or ():
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text":
            out.append({"text": part.get("text", "")})
        elif kind == "image_url":
            url = part.get("image_url")
            out.append(image(str(url.get("url") if isinstance(url, dict) else url)))
        else:
            raise not_translated(provider, f"a content part of type {kind!r}")
    return out


def stop_list(stop: Any) -> list[str] | None:
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and stop:
        return [str(s) for s in stop]
    return None


def json_schema_of(response_format: Any) -> dict[str, Any] | None:
    """The schema a `response_format` asks for: the json_schema's, or any object for json_object;
    None when it asks for text (or is absent)."""
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return schema if isinstance(schema, dict) else {"type": "object"}
    if kind == "json_object":
        return {"type": "object"}
    return None


def not_translated(provider: str, what: str) -> UpstreamError:
    """A request this adapter cannot express in the provider's format (400, OpenAI's error)."""
    return UpstreamError(
        400, f"{provider}: {what} is not translated for this provider", code="unsupported"
    )


def error_message(raw: bytes, fallback: str) -> tuple[str, Any, str | None]:
    """(message, decoded body, code) from a provider's error body, whatever its shape:
    `{"error": {"message", "type"|"status"|"code"}}`, `{"message"}` or plain text."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = raw.decode(errors="replace").strip()
        return (f"{fallback}: {text[:500]}" if text else fallback), None, None
    if isinstance(body, list) and body and isinstance(body[0], dict):
        body = body[0]  # Gemini's streamed errors come as a one-element array
    if not isinstance(body, dict):
        return fallback, body, None
    err = body.get("error")
    if isinstance(err, dict):
        code = err.get("type") or err.get("status") or err.get("code")
        return str(err.get("message") or fallback), body, str(code) if code is not None else None
    if isinstance(err, str):
        return err, body, None
    message = body.get("message") or body.get("Message")
    return (str(message) if message else fallback), body, None


class TranslatingAdapter:
    """One provider: subclasses build its request and translate its answers."""

    provider = "provider"

    # -- what each provider supplies ----------------------------------------------------
    async def prepare(self, dep: Deployment, body: dict[str, Any], stream: bool) -> Outgoing:
        raise NotImplementedError

    def response(
        self, data: dict[str, Any], dep: Deployment, body: dict[str, Any]
    ) -> dict[str, Any]:
        raise NotImplementedError

    def translator(self, dep: Deployment, body: dict[str, Any]) -> ChunkTranslator:
        raise NotImplementedError

    def error(self, status: int, raw: bytes, headers: Mapping[str, str]) -> UpstreamError:
        message, body, code = error_message(raw, f"{self.provider} answered {status}")
        return UpstreamError(status, message, body, code)

    async def events(self, resp: httpx.Response) -> AsyncIterator[Any]:
        """The provider's stream events; server-sent events with JSON data by default."""
        async for sse in EventSource(resp).aiter_sse():
            if not sse.data or sse.data.strip() == "[DONE]":
                continue
            try:
                yield orjson.loads(sse.data)
            except orjson.JSONDecodeError:
                continue  # keep-alives: nothing to translate

    # -- the exchange -------------------------------------------------------------------
    def _check_path(self, path: str) -> None:
        if path != CHAT_PATH:
            raise not_translated(self.provider, path.lstrip("/"))

    def unreachable(self, exc: BaseException, url: str) -> UpstreamUnreachableError:
        failed = exc if isinstance(exc, UnreachableError) else unreachable(exc)
        what = "timed out" if failed.timed_out else "is unreachable"
        host = httpx.URL(url).copy_with(query=None)
        return UpstreamUnreachableError(
            f"{self.provider} upstream {host} {what}: {failed.reason}", failed.timed_out
        )

    async def chat(
        self,
        client: UpstreamClient,
        dep: Deployment,
        body: dict[str, Any],
        timeout: float,
        traceparent: str | None,
        path: str = CHAT_PATH,
    ) -> dict[str, Any]:
        self._check_path(path)
        out = await self.prepare(dep, body, stream=False)
        headers = {**out.headers, "traceparent": traceparent} if traceparent else out.headers
        try:
            reply = await post(client, out.url, out.content, headers, timeout)
        except UnreachableError as exc:
            raise self.unreachable(exc, out.url) from exc
        if reply.status >= 400:
            raise self.error(reply.status, reply.content, reply.headers)
        try:
            data = orjson.loads(reply.content)
        except orjson.JSONDecodeError:
            raise UpstreamError(
                502, f"{self.provider} answered with a body that is not JSON"
            ) from None
        if not isinstance(data, dict):
            raise UpstreamError(502, f"{self.provider} answered with JSON that is not an object")
        return self.response(data, dep, body)

    def stream(
        self,
        client: httpx.AsyncClient,
        dep: Deployment,
        body: dict[str, Any],
        timeout: float,
        traceparent: str | None,
        path: str = CHAT_PATH,
    ) -> TranslatedStream:
        return TranslatedStream(self, client, dep, body, timeout, traceparent, path)


class TranslatedStream:
    """A provider's stream as OpenAI chunks (the `upstream.Stream` interface)."""

    def __init__(
        self,
        adapter: TranslatingAdapter,
        client: httpx.AsyncClient,
        dep: Deployment,
        body: dict[str, Any],
        timeout: float,
        traceparent: str | None,
        path: str,
    ) -> None:
        self._adapter = adapter
        self._client = client
        self._dep = dep
        self._body = body
        self._timeout = timeout
        self._traceparent = traceparent
        self._path = path
        self._resp: httpx.Response | None = None
        self._url = ""

    async def open(self) -> None:
        a = self._adapter
        a._check_path(self._path)
        out = await a.prepare(self._dep, self._body, stream=True)
        self._url = out.url
        headers = out.headers
        if self._traceparent:
            headers = {**headers, "traceparent": self._traceparent}
        request = self._client.build_request(
            "POST", out.url, content=out.content, headers=headers, timeout=self._timeout
        )
        try:
            self._resp = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise a.unreachable(exc, out.url) from exc
        if self._resp.status_code >= 400:
            raw = await self._resp.aread()
            await self._resp.aclose()
            raise a.error(self._resp.status_code, raw, self._resp.headers)

    async def chunks(self) -> AsyncIterator[dict[str, Any] | None]:
        assert self._resp is not None
        translator = self._adapter.translator(self._dep, self._body)
        try:
            async for event in self._adapter.events(self._resp):
                for chunk in translator.feed(event):
                    yield chunk
        except httpx.HTTPError as exc:
            raise self._adapter.unreachable(exc, self._url) from exc
        for chunk in translator.end():
            yield chunk
        yield None

    async def close(self) -> None:
        if self._resp is not None:
            await self._resp.aclose()


def param(dep: Deployment, name: str) -> Any:
    """A provider's own `litellm_params` key (`vertex_project`, `aws_region_name`, …), which
    the shared config keeps as an extra."""
    value = getattr(dep.params, name, None)
    if value is None and dep.params.model_extra:
        value = dep.params.model_extra.get(name)
    return value
