"""The contract every sink meets: what it registers (`SinkType`), how it sends, how it fails.

A sink module defines `SINK = SinkType(...)`: its kind, the callback names it
serves, how it builds a destination from callback variables and the environment,
and how it builds its sender from the exporter's shared client and settings.

SinkError
├── RetryableError   429, 5xx, timeouts, connection errors: try the batch again
└── PermanentError   any other refusal (bad credentials, 4xx): dead-letter now
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from tollgate_exporter.destinations import Destination
from tollgate_exporter.settings import ExporterSettings
from tollgate_shared.config import LitellmSettings
from tollgate_shared.events import LlmRequestFinished
from tollgate_shared.retries import retry_after_s

# Namespace of every id the exporter derives from an event id (stable across redelivery).
ID_NAMESPACE = uuid.UUID("5b0e3c52-8a3c-4f7e-9a57-7f1f6e0c2d11")


def stable_id(*parts: str) -> str:
    """A UUIDv5 from an event id and a purpose: the same on every redelivery."""
    return str(uuid.uuid5(ID_NAMESPACE, "|".join(parts)))


class SinkError(Exception):
    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class RetryableError(SinkError):
    """The destination may accept the same batch later (after `retry_after` s, if it said)."""

    def __init__(
        self, message: str, status_code: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status_code)
        self.retry_after = retry_after


class PermanentError(SinkError):
    """The destination refused the batch; retrying will not help."""


@dataclass(frozen=True)
class ExportItem:
    """One event for one destination, already redacted when it had to be."""

    event: LlmRequestFinished
    redacted: bool


@dataclass
class BatchResult:
    """Items of a batch the destination refused individually (index -> reason)."""

    rejected: dict[int, str] = field(default_factory=dict)


class Sink(Protocol):
    kind: str

    async def send(self, destination: Destination, items: Sequence[ExportItem]) -> BatchResult:
        """Deliver a batch; raise RetryableError / PermanentError when it was not accepted."""
        ...


class ClosableSink(Sink, Protocol):
    async def close(self) -> None:
        """Release what the sink holds (channels); the shared HTTP client is not its own."""
        ...


@dataclass(frozen=True)
class SinkContext:
    """What a sink builds its sender from: the shared HTTP client and the configuration."""

    client: httpx.AsyncClient
    settings: ExporterSettings
    litellm: LitellmSettings
    env: Mapping[str, str]


# (callback name, callback variables, process environment) -> the destination, or why not.
DestinationBuilder = Callable[[str, Mapping[str, Any], Mapping[str, str]], "Destination | str"]


@dataclass(frozen=True)
class SinkType:
    """A sink as the registry knows it.

    `names` are the callback names it serves; `claims(vars, named)` lets it also serve
    a callback of any other name, given the callback's variables and its
    `callback_settings.<name>` entry (a named webhook, say).
    """

    kind: str
    names: tuple[str, ...]
    destination: DestinationBuilder
    create: Callable[[SinkContext], ClosableSink]
    claims: Callable[[Mapping[str, Any], Mapping[str, Any]], bool] | None = None


def raise_for_status(response: httpx.Response, what: str) -> None:
    """Map an HTTP answer to the retry decision."""
    code = response.status_code
    if code < 300:
        return
    detail = f"{what} answered {code}: {response.text[:300]}"
    if code in (408, 425, 429) or code >= 500:
        raise RetryableError(detail, code, retry_after_s(response.headers))
    raise PermanentError(detail, code)


async def request(
    client: httpx.AsyncClient, method: str, url: str, what: str, **kwargs: Any
) -> httpx.Response:
    """An HTTP request with transport failures mapped to RetryableError, answers to the decision."""
    try:
        response = await client.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise RetryableError(f"{what} timed out: {type(exc).__name__}") from exc
    except httpx.TransportError as exc:
        raise RetryableError(f"{what} unreachable: {type(exc).__name__}: {exc}") from exc
    raise_for_status(response, what)
    return response


async def post(client: httpx.AsyncClient, url: str, what: str, **kwargs: Any) -> httpx.Response:
    """POST with transport failures mapped to RetryableError."""
    return await request(client, "POST", url, what, **kwargs)
