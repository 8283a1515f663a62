"""Fake upstreams that speak each provider's own wire format, on one test server.

`FakeProviders` is the behaviour shared with the server thread: `reply` (the answer's text),
`tool_call` (name and arguments to answer with when tools are offered), `fail` (provider ->
status to answer with, in that provider's error format). Every request is recorded in
`requests` as (provider, path, headers, body); what a fake finds wrong with one (auth header,
SigV4 signature, path, body shape) is in `problems` and answered with 400/401, so a test that
forgets to look still fails. Usage is deterministic: input tokens = words of text in the
request, output tokens = words of `reply`.

Each provider's routes live in its own module (`anthropic`, `azure`, `gemini` with Vertex's
token endpoint, `bedrock` with the binary event stream) under a path prefix of its name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from litestar import Litestar

from support.fake_upstream import serve_in_thread

ANTHROPIC_KEY = "sk-ant-fake"
AZURE_KEY = "azure-fake-key"
GEMINI_KEY = "gemini-fake-key"
AWS_KEY_ID = "AKIDFAKE"
AWS_SECRET = "fake-secret-key"


def words(value: Any) -> int:
    """Words of text anywhere in a request body (every string under a text-ish key)."""
    if isinstance(value, dict):
        return sum(
            len(v.split()) if k in ("text", "content") and isinstance(v, str) else words(v)
            for k, v in value.items()
        )
    if isinstance(value, list):
        return sum(words(v) for v in value)
    return 0


@dataclass
class FakeProviders:
    reply: str = "Hello from the fake provider"
    tool_call: tuple[str, dict[str, Any]] | None = None
    fail: dict[str, int] = field(default_factory=dict)
    port: int = 0
    requests: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    vertex_tokens: set[str] = field(default_factory=set)
    service_account: dict[str, Any] = field(default_factory=dict)

    def base(self, provider: str) -> str:
        return f"http://127.0.0.1:{self.port}/{provider}"

    def last(self, provider: str) -> tuple[str, dict[str, str], Any]:
        for p, path, headers, body in reversed(self.requests):
            if p == provider:
                return path, headers, body
        raise AssertionError(f"no request reached the fake {provider}")

    def problem(self, message: str) -> str:
        self.problems.append(message)
        return message

    def reset(self) -> None:
        self.reply = "Hello from the fake provider"
        self.tool_call = None
        self.fail = {}
        self.problems.clear()

    def app(self) -> Litestar:
        from support.fake_providers import anthropic, azure, bedrock, gemini

        handlers = [
            *anthropic.routes(self),
            *azure.routes(self),
            *gemini.routes(self),
            *bedrock.routes(self),
        ]
        return Litestar(route_handlers=handlers, debug=False)


@contextmanager
def fake_providers(**kwargs: Any) -> Iterator[FakeProviders]:
    fp = FakeProviders(**kwargs)
    from support.fake_providers import gemini

    app = fp.app()
    with serve_in_thread(app) as port:
        fp.port = port
        fp.service_account = gemini.service_account(fp.base("vertex") + "/token")
        yield fp


PROVIDERS = ("anthropic", "azure", "gemini", "vertex_ai", "bedrock")


def model_list(
    fp: FakeProviders, openai_base: str, prices: Mapping[str, str]
) -> list[dict[str, Any]]:
    """One deployment per provider against the fakes (model name = provider prefix), plus
    `anthropic-overloaded` and the OpenAI-compatible `openai-backup` at `openai_base` for the
    529 fallback; every deployment with `prices` in its litellm_params."""

    def entry(name: str, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "model_name": name,
            "litellm_params": {**params, **prices},
            "model_info": {"id": f"{name}-1"},
        }

    return [
        entry("anthropic", {"model": "anthropic/claude-sonnet-4-5",
                            "api_base": fp.base("anthropic"), "api_key": ANTHROPIC_KEY}),
        entry("azure", {"model": "azure/gpt-4o-prod", "api_base": fp.base("azure"),
                        "api_key": AZURE_KEY, "api_version": "2024-10-21"}),
        entry("gemini", {"model": "gemini/gemini-2.5-flash",
                         "api_base": fp.base("gemini") + "/v1beta", "api_key": GEMINI_KEY}),
        entry("vertex_ai", {"model": "vertex_ai/gemini-2.5-pro", "api_base": fp.base("vertex"),
                            "vertex_project": "fake-project", "vertex_location": "europe-west4",
                            "vertex_credentials": json.dumps(fp.service_account)}),
        entry("bedrock", {"model": "bedrock/anthropic.claude-3-5-haiku-20241022-v1:0",
                          "api_base": fp.base("bedrock"), "aws_region_name": "eu-central-1",
                          "aws_access_key_id": AWS_KEY_ID, "aws_secret_access_key": AWS_SECRET}),
        entry("anthropic-overloaded", {"model": "anthropic/claude-haiku-4-5",
                                       "api_base": fp.base("anthropic"), "api_key": ANTHROPIC_KEY}),
        entry("openai-backup", {"model": "openai/gpt-4o-mini", "api_base": openai_base,
                                "api_key": "sk-upstream"}),
    ]  # fmt: skip
