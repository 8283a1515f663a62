"""An OpenAI-compatible upstream over HTTP: plain and streamed chat completions.

Exceptions: UpstreamError (the upstream answered with an error status),
UpstreamUnreachableError (no connection, or it timed out). Both carry what the
client's OpenAI-format error and the failed event need.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import orjson
from httpx_sse import EventSource

from tollgate_ingress.routing import Deployment
from tollgate_ingress.upstream.http import UnreachableError, UpstreamClient, post, unreachable

DEFAULT_API_BASE = "https://api.openai.com/v1"


class UpstreamLimits:
    """The latest `x-ratelimit-remaining-requests/tokens` each deployment answered with, for
    `litellm_remaining_requests` / `litellm_remaining_tokens`. Bounded by the
    number of deployments; the metrics read it when they record the call."""

    def __init__(self) -> None:
        self._latest: dict[str, tuple[int | None, int | None]] = {}

    def seen(self, model_id: str, headers: Mapping[str, str]) -> None:
        requests = _int(headers.get("x-ratelimit-remaining-requests"))
        tokens = _int(headers.get("x-ratelimit-remaining-tokens"))
        if requests is not None or tokens is not None:
            self._latest[model_id] = (requests, tokens)

    def latest(self, model_id: str) -> tuple[int | None, int | None]:
        return self._latest.get(model_id, (None, None))


def _int(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        return int(float(raw))
    except ValueError:
        return None


LIMITS = UpstreamLimits()


class UpstreamError(Exception):
    def __init__(
        self, status: int, message: str, body: Any = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body
        self.code = code


class UpstreamUnreachableError(Exception):
    def __init__(self, message: str, timed_out: bool) -> None:
        super().__init__(message)
        self.message = message
        self.timed_out = timed_out

    @property
    def status(self) -> int:
        return 504 if self.timed_out else 502


def _url(dep: Deployment, path: str = "/chat/completions") -> str:
    return (dep.params.api_base or DEFAULT_API_BASE).rstrip("/") + path


def _headers(dep: Deployment, traceparent: str | None) -> dict[str, str]:
    h = {"content-type": "application/json"}
    if dep.params.api_key:
        h["authorization"] = f"Bearer {dep.params.api_key}"
    if traceparent:
        h["traceparent"] = traceparent
    return h


def _body_for(dep: Deployment, body: dict[str, Any]) -> bytes:
    return orjson.dumps({**body, "model": dep.params.upstream_model})


def _error_from(status: int, raw: bytes) -> UpstreamError:
    message = f"upstream answered {status}"
    code = None
    body: Any = None
    try:
        body = orjson.loads(raw)
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            message = str(err.get("message") or message)
            code = str(err["code"]) if err.get("code") is not None else None
        elif isinstance(err, str):
            message = err
    except orjson.JSONDecodeError:
        text = raw.decode(errors="replace").strip()
        if text:
            message = f"{message}: {text[:500]}"
    return UpstreamError(status, message, body, code)


def _unreachable(exc: BaseException, dep: Deployment) -> UpstreamUnreachableError:
    failed = exc if isinstance(exc, UnreachableError) else unreachable(exc)
    what = "timed out" if failed.timed_out else "is unreachable"
    return UpstreamUnreachableError(
        f"upstream {dep.params.api_base or DEFAULT_API_BASE} {what}: {failed.reason}",
        failed.timed_out,
    )


async def chat(
    client: UpstreamClient,
    dep: Deployment,
    body: dict[str, Any],
    timeout: float,
    traceparent: str | None,
    path: str = "/chat/completions",
) -> dict[str, Any]:
    try:
        reply = await post(
            client, _url(dep, path), _body_for(dep, body), _headers(dep, traceparent), timeout
        )
    except UnreachableError as exc:
        raise _unreachable(exc, dep) from exc
    LIMITS.seen(dep.model_id, reply.headers)
    if reply.status >= 400:
        raise _error_from(reply.status, reply.content)
    try:
        data = orjson.loads(reply.content)
    except orjson.JSONDecodeError:
        raise UpstreamError(502, "upstream answered with a body that is not JSON") from None
    if not isinstance(data, dict):
        raise UpstreamError(502, "upstream answered with JSON that is not an object")
    return data


class ChatStream:
    """An open streamed response: `open()` raises on an error status, then iterate chunks
    (chat completion chunks, or Responses events when `path` is `/responses`)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        dep: Deployment,
        body: dict[str, Any],
        timeout: float,
        traceparent: str | None,
        path: str = "/chat/completions",
    ) -> None:
        self._client = client
        self._dep = dep
        self._request = client.build_request(
            "POST",
            _url(dep, path),
            content=_body_for(dep, body),
            headers=_headers(dep, traceparent),
            timeout=timeout,
        )
        self._resp: httpx.Response | None = None

    async def open(self) -> None:
        try:
            self._resp = await self._client.send(self._request, stream=True)
        except httpx.HTTPError as exc:
            raise _unreachable(exc, self._dep) from exc
        LIMITS.seen(self._dep.model_id, self._resp.headers)
        if self._resp.status_code >= 400:
            raw = await self._resp.aread()
            await self._resp.aclose()
            raise _error_from(self._resp.status_code, raw)

    async def chunks(self) -> AsyncIterator[dict[str, Any] | None]:
        """Each decoded chunk; None marks the `[DONE]` sentinel."""
        assert self._resp is not None
        try:
            async for sse in EventSource(self._resp).aiter_sse():
                data = sse.data
                if not data:
                    continue
                if data.strip() == "[DONE]":
                    yield None
                    return
                try:
                    chunk = orjson.loads(data)
                except orjson.JSONDecodeError:
                    continue  # keep-alive comments or garbage: nothing to relay
                if isinstance(chunk, dict):
                    if "error" in chunk and not chunk.get("choices"):
                        err = chunk["error"] if isinstance(chunk["error"], dict) else {}
                        raise UpstreamError(502, str(err.get("message") or chunk["error"]))
                    yield chunk
        except httpx.HTTPError as exc:
            raise _unreachable(exc, self._dep) from exc

    async def close(self) -> None:
        if self._resp is not None:
            await self._resp.aclose()
