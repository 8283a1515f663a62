"""Sink credentials: `os.environ/` in callback_vars, global keys never leave for other hosts,
the master key compared in constant time, and 4xx (not 408/429) dead-lettered at once."""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

import httpx
import pytest

from support.receivers.samples import completed
from tollgate_exporter import routing
from tollgate_exporter.health import key_health_report
from tollgate_exporter.routing import Router, resolve_callbacks
from tollgate_exporter.service import Dispatcher, KeyHealth
from tollgate_exporter.settings import ExporterSettings
from tollgate_exporter.sinks import registry
from tollgate_exporter.sinks.base import PermanentError, RetryableError, post
from tollgate_shared.config import LitellmSettings, parse_config
from tollgate_shared.events import ExportDeadLettered
from tollgate_shared.state import KeyState, LoggingCallback, hash_key

GLOBAL = {
    "LANGFUSE_PUBLIC_KEY": "pk-global",
    "LANGFUSE_SECRET_KEY": "sk-global",
    "LANGFUSE_HOST": "https://lf.global",
    "OTEL_EXPORTER": "otlp_http",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector.global:4318",
    "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20global-token",
}


def settings(**litellm: Any) -> LitellmSettings:
    return parse_config({"litellm_settings": litellm}).litellm_settings


def key_with(*callbacks: LoggingCallback) -> KeyState:
    return KeyState(
        token=hash_key("sk-k"),
        key_alias="k",
        metadata={"logging": [c.model_dump() for c in callbacks]},
    )


def routes_for(key: KeyState, env: dict[str, str]) -> routing.RouteSet:
    s = settings()
    return routing.route(resolve_callbacks(s, None, key, None), None, s, env, registry())


SEED_003 = LoggingCallback(
    callback_name="langfuse",
    callback_type="success",
    callback_vars={
        "langfuse_public_key": "os.environ/LANGFUSE_PUBLIC_KEY",
        "langfuse_secret_key": "os.environ/LANGFUSE_SECRET_KEY",
        "langfuse_host": "https://cloud.langfuse.com",
    },
)


def test_environment_references_in_callback_vars_are_resolved() -> None:
    env = {"LANGFUSE_PUBLIC_KEY": "pk-real", "LANGFUSE_SECRET_KEY": "sk-real"}
    rs = routes_for(key_with(SEED_003), env)
    (r,) = rs.routes
    assert r.unusable is None
    assert r.destination.options == {
        "host": "https://cloud.langfuse.com",
        "public_key": "pk-real",
        "secret_key": "sk-real",
    }
    # Nested values (headers) too.
    otel = LoggingCallback(
        callback_name="otel",
        callback_vars={
            "otel_endpoint": "https://c.example",
            "otel_headers": {"x-api-key": "os.environ/OTEL_TEAM_TOKEN"},
        },
    )
    (o,) = routes_for(key_with(otel), {"OTEL_TEAM_TOKEN": "t0k"}).routes
    assert o.destination.options["headers"] == {"x-api-key": "t0k"}


def test_an_unset_reference_is_unusable_named_and_never_the_literal() -> None:
    env = {"LANGFUSE_PUBLIC_KEY": "pk-real"}
    rs = routes_for(key_with(SEED_003), env)
    (r,) = rs.routes
    assert r.unusable == (
        "callback_vars.langfuse_secret_key: environment variable LANGFUSE_SECRET_KEY is not set"
    )
    assert "os.environ/" not in repr(r.destination.options)
    report = key_health_report(rs, lambda d: None, 300)
    assert report["key"] == "unhealthy"
    assert "LANGFUSE_SECRET_KEY" in report["logging_callbacks"]["details"]


async def test_an_unusable_route_is_dead_lettered_with_the_reason_not_sent() -> None:
    sent: list[Any] = []

    class Sink:
        kind = "langfuse"

        async def send(self, destination: Any, items: Any) -> Any:
            sent.append(items)
            raise AssertionError("must not be sent")

    dead: list[ExportDeadLettered] = []

    async def publish(record: ExportDeadLettered) -> None:
        dead.append(record)

    class Msg:
        subject = "llm.request.completed.v1._"
        metadata = None
        acked = asyncio.Event()

        async def ack(self) -> None:
            self.acked.set()

    rs = routes_for(key_with(SEED_003), {})
    dispatcher = Dispatcher(ExporterSettings(), {"langfuse": Sink()}, publish, 30)
    msg = Msg()
    await dispatcher.submit(msg, completed(), rs.routes)  # type: ignore[arg-type]
    await asyncio.wait_for(msg.acked.wait(), 2)
    assert not sent
    (record,) = dead
    assert "LANGFUSE_PUBLIC_KEY is not set" in record.error
    assert "LANGFUSE_SECRET_KEY is not set" in record.error


def test_a_langfuse_host_override_never_gets_the_global_keys() -> None:
    only_host = LoggingCallback(
        callback_name="langfuse", callback_vars={"langfuse_host": "https://lf.elsewhere"}
    )
    rs = routes_for(key_with(only_host), GLOBAL)
    assert not rs.routes
    (problem,) = rs.problems
    assert "global keys are only sent to the global host" in problem.reason
    # The global host named explicitly still uses the global project.
    same = LoggingCallback(
        callback_name="langfuse", callback_vars={"langfuse_host": "https://lf.global/"}
    )
    (r,) = routes_for(key_with(same), GLOBAL).routes
    assert r.destination.options["secret_key"] == "sk-global"


def test_an_otel_endpoint_override_never_gets_the_global_headers() -> None:
    only_endpoint = LoggingCallback(
        callback_name="otel", callback_vars={"otel_endpoint": "https://collector.team-b"}
    )
    (r,) = routes_for(key_with(only_endpoint), GLOBAL).routes
    assert r.destination.options["url"] == "https://collector.team-b/v1/traces"
    assert r.destination.options["headers"] == {}
    own = LoggingCallback(
        callback_name="otel",
        callback_vars={"otel_endpoint": "https://collector.team-b", "otel_headers": "k=v"},
    )
    (r,) = routes_for(key_with(own), GLOBAL).routes
    assert r.destination.options["headers"] == {"k": "v"}
    (g,) = routes_for(key_with(LoggingCallback(callback_name="otel")), GLOBAL).routes
    assert g.destination.options["headers"] == {"authorization": "Bearer global-token"}


def test_the_master_key_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    s = settings(success_callback=["langfuse"])
    router = Router(s, GLOBAL, lambda h: None, lambda t: None, registry())
    health = KeyHealth(lambda: router, lambda h: None, lambda d: None, "sk-master", 300)
    assert health.check("sk-master")["logging_callbacks"]["callbacks"] == ["langfuse"]
    assert calls


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, PermanentError),
        (401, PermanentError),
        (413, PermanentError),
        (422, PermanentError),
        (408, RetryableError),
        (429, RetryableError),
        (503, RetryableError),
    ],
)
async def test_a_malformed_payload_is_permanent_with_the_vendors_answer(
    status: int, error: type[Exception]
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status, text="field 'ddsource' is invalid", headers={"retry-after": "7"}
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        with pytest.raises(error) as caught:
            await post(client, "https://vendor.example/intake", "vendor")
    assert "field 'ddsource' is invalid" in str(caught.value)
    if isinstance(caught.value, RetryableError):
        assert caught.value.retry_after == 7
