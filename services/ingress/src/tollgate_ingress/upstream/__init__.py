"""Adapters to the model providers ingress forwards to: one module per wire format, found by
the provider prefix of a deployment's `model` (`anthropic/claude-…` answers through
`upstream/anthropic.py`); any prefix not registered speaks OpenAI's format (`upstream/openai.py`).

The registry is read when deployments are built (`adapter_for`), never per request, so the
OpenAI-compatible path costs what it did before adapters existed.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any, Protocol

from tollgate_ingress.upstream import openai

if TYPE_CHECKING:
    from tollgate_ingress.routing import Deployment
    from tollgate_ingress.upstream.http import UpstreamClient

__all__ = ["REGISTRY", "Adapter", "Stream", "adapter_for", "adapter_of"]


class Stream(Protocol):
    """An upstream stream in OpenAI's terms: `open()` raises on an error status; `chunks()`
    yields chat completion chunks (usage in the last one) and None at the end."""

    async def open(self) -> None: ...

    def chunks(self) -> AsyncIterator[dict[str, Any] | None]: ...

    async def close(self) -> None: ...


class Adapter(Protocol):
    """One provider's wire format behind OpenAI's chat completions."""

    def chat(
        self,
        client: UpstreamClient,
        dep: Deployment,
        body: dict[str, Any],
        timeout: float,
        traceparent: str | None,
        path: str = "/chat/completions",
    ) -> Awaitable[dict[str, Any]]: ...

    def stream(
        self,
        client: UpstreamClient,
        dep: Deployment,
        body: dict[str, Any],
        timeout: float,
        traceparent: str | None,
        path: str = "/chat/completions",
    ) -> Stream: ...


class _OpenAICompatible:
    """`upstream/openai.py` as an Adapter: its functions, not wrappers around them."""

    chat = staticmethod(openai.chat)
    stream = staticmethod(openai.ChatStream)


OPENAI_COMPATIBLE: Adapter = _OpenAICompatible()

# Provider prefix -> the module whose `ADAPTER` speaks its wire format. Imported on first use,
# so a gateway without Bedrock deployments never loads botocore.
REGISTRY: dict[str, str] = {
    "anthropic": "tollgate_ingress.upstream.anthropic",
    "azure": "tollgate_ingress.upstream.azure",
    "gemini": "tollgate_ingress.upstream.gemini",
    "vertex_ai": "tollgate_ingress.upstream.vertex_ai",
    "bedrock": "tollgate_ingress.upstream.bedrock",
}


def adapter_for(provider: str) -> Adapter:
    """The adapter of a provider prefix; OpenAI-compatible for any prefix not registered."""
    module = REGISTRY.get(provider)
    if module is None:
        return OPENAI_COMPATIBLE
    adapter: Adapter = importlib.import_module(module).ADAPTER
    return adapter


def adapter_of(dep: Deployment) -> Adapter:
    """The adapter a deployment was built with (OpenAI-compatible when built without one)."""
    adapter: Adapter | None = dep.adapter
    return adapter if adapter is not None else OPENAI_COMPATIBLE
