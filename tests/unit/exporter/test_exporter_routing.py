"""Routing: LiteLLM's precedence (key > team > default_team_settings > global) and redaction."""

from __future__ import annotations

from typing import Any

import pytest

from tollgate_exporter import routing
from tollgate_exporter.destinations import parse_headers
from tollgate_exporter.routing import Outcome, Resolution, RouteSet, resolve_callbacks
from tollgate_exporter.sinks import registry
from tollgate_shared.config import LitellmSettings, parse_config
from tollgate_shared.state import KeyState, LoggingCallback, TeamState

ENV = {
    "LANGFUSE_PUBLIC_KEY": "pk-global",
    "LANGFUSE_SECRET_KEY": "sk-global",
    "LANGFUSE_HOST": "http://lf.global:3000",
    "OTEL_EXPORTER": "otlp_http",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
    "OTEL_EXPORTER_OTLP_HEADERS": "api-key=abc%20def,x-tenant=t1",
    "OTEL_SERVICE_NAME": "gateway",
    "WEBHOOK_URL": "http://hooks.example/in",
}


def route(
    res: Resolution, outcome: Outcome | None, s: LitellmSettings, env: dict[str, str]
) -> RouteSet:
    return routing.route(res, outcome, s, env, registry())


def settings(**litellm: Any) -> LitellmSettings:
    return parse_config({"litellm_settings": litellm}).litellm_settings


def lf(pk: str, sk: str, host: str = "http://lf.team:3000", **extra: Any) -> LoggingCallback:
    return LoggingCallback(
        callback_name="langfuse",
        callback_vars={
            "langfuse_public_key": pk,
            "langfuse_secret_key": sk,
            "langfuse_host": host,
            **extra,
        },
    )


def names_of(rs: Any) -> list[tuple[str, str]]:
    return sorted((r.destination.sink, r.destination.label) for r in rs.routes)


def test_global_lists_split_by_outcome() -> None:
    s = settings(success_callback=["langfuse"], failure_callback=["webhook"], callbacks="otel")
    res = resolve_callbacks(s, None, None, None)
    ok = route(res, "success", s, ENV)
    bad = route(res, "failure", s, ENV)
    assert [r.destination.sink for r in ok.routes] == ["otel", "langfuse"]
    assert [r.destination.sink for r in bad.routes] == ["otel", "webhook"]
    assert res.source == "global"


def test_global_destinations_come_from_the_environment() -> None:
    s = settings(callbacks=["langfuse", "otel"])
    rs = route(resolve_callbacks(s, None, None, None), "success", s, ENV)
    lf_dest, otel_dest = (r.destination for r in rs.routes)
    assert lf_dest.options == {
        "host": "http://lf.global:3000",
        "public_key": "pk-global",
        "secret_key": "sk-global",
    }
    assert "sk-global" not in lf_dest.label
    assert "pk-global" in lf_dest.label
    assert otel_dest.options["url"] == "http://collector:4318/v1/traces"
    assert otel_dest.options["headers"] == {"api-key": "abc def", "x-tenant": "t1"}
    assert otel_dest.options["service_name"] == "gateway"


def test_default_team_settings_give_each_team_its_own_project() -> None:
    s = settings(
        success_callback=["langfuse"],
        default_team_settings=[
            {
                "team_id": "t1",
                "success_callback": ["langfuse"],
                "langfuse_public_key": "pk-1",
                "langfuse_secret": "sk-1",
            },
            {
                "team_id": "t2",
                "success_callback": ["langfuse"],
                "langfuse_public_key": "pk-2",
                "langfuse_secret_key": "sk-2",
                "langfuse_host": "http://lf.two",
            },
        ],
    )
    r1 = route(resolve_callbacks(s, "t1", None, None), "success", s, ENV)
    r2 = route(resolve_callbacks(s, "t2", None, None), "success", s, ENV)
    r3 = route(resolve_callbacks(s, "t3", None, None), "success", s, ENV)
    d1, d2, d3 = r1.routes[0].destination, r2.routes[0].destination, r3.routes[0].destination
    assert d1.options["public_key"] == "pk-1"
    assert d1.options["secret_key"] == "sk-1"
    assert d1.options["host"] == "http://lf.global:3000"  # host falls back to LANGFUSE_HOST
    assert d2.options == {"host": "http://lf.two", "public_key": "pk-2", "secret_key": "sk-2"}
    assert d3.options["public_key"] == "pk-global"
    assert len({d1.key, d2.key, d3.key}) == 3
    # success_callback only: failures of team t1 go nowhere
    assert route(resolve_callbacks(s, "t1", None, None), "failure", s, ENV).routes == ()


def test_precedence_key_over_team_over_defaults_over_global() -> None:
    s = settings(
        callbacks=["webhook"],
        default_team_settings=[{"team_id": "t1", "callbacks": ["otel"]}],
    )
    team = TeamState(team_id="t1", logging=[lf("pk-team", "sk-team")])
    key = KeyState(
        token="h", team_id="t1", metadata={"logging": [lf("pk-key", "sk-key").model_dump()]}
    )
    plain_key = KeyState(token="h2", team_id="t1")

    assert resolve_callbacks(s, "t1", key, team).source == "key"
    assert resolve_callbacks(s, "t1", plain_key, team).source == "team"
    assert resolve_callbacks(s, "t1", plain_key, None).source == "default_team_settings"
    assert resolve_callbacks(s, "t9", plain_key, None).source == "global"

    key_routes = route(resolve_callbacks(s, "t1", key, team), "success", s, ENV)
    assert [r.destination.options["public_key"] for r in key_routes.routes] == ["pk-key"]


def test_disabled_team_sends_nothing_even_with_a_key_override() -> None:
    s = settings(callbacks=["langfuse", "otel", "webhook"])
    team = TeamState(team_id="gdpr", logging_disabled=True, logging=[lf("pk", "sk")])
    key = KeyState(token="h", team_id="gdpr", metadata={"logging": [lf("a", "b").model_dump()]})
    res = resolve_callbacks(s, "gdpr", key, team)
    assert res.source == "disabled"
    assert route(res, "success", s, ENV).routes == ()
    assert route(res, None, s, ENV).routes == ()


def test_empty_key_logging_means_nothing_for_that_key() -> None:
    s = settings(callbacks=["langfuse"])
    key = KeyState(token="h", metadata={"logging": []})
    assert route(resolve_callbacks(s, None, key, None), "success", s, ENV).routes == ()


def test_callback_type_filters_team_callbacks() -> None:
    s = settings()
    team = TeamState(
        team_id="t",
        logging=[
            LoggingCallback(
                callback_name="langfuse",
                callback_type="failure",
                callback_vars={"langfuse_public_key": "p", "langfuse_secret_key": "s"},
            )
        ],
    )
    res = resolve_callbacks(s, "t", None, team)
    assert route(res, "success", s, ENV).routes == ()
    assert len(route(res, "failure", s, ENV).routes) == 1


def test_same_project_for_two_teams_is_one_destination() -> None:
    s = settings()
    a = TeamState(team_id="a", logging=[lf("pk", "sk")])
    b = TeamState(team_id="b", logging=[lf("pk", "sk")])
    c = TeamState(team_id="c", logging=[lf("pk", "other-secret")])
    keys = {
        route(resolve_callbacks(s, t.team_id, None, t), "success", s, ENV).routes[0].destination.key
        for t in (a, b, c)
    }
    assert len(keys) == 2


def test_redaction_global_and_per_key_opt_back_in() -> None:
    s = settings(callbacks=["langfuse"], turn_off_message_logging=True)
    plain = route(resolve_callbacks(s, None, None, None), "success", s, ENV)
    assert plain.routes[0].redact is True
    key = KeyState(
        token="h",
        metadata={"logging": [lf("pk", "sk", turn_off_message_logging=False).model_dump()]},
    )
    opted = route(resolve_callbacks(s, None, key, None), "success", s, ENV)
    assert opted.routes[0].redact is False


def test_callback_settings_message_logging_false_redacts_that_callback() -> None:
    s = settings(
        callbacks=["langfuse", "otel"], callback_settings={"otel": {"message_logging": False}}
    )
    rs = route(resolve_callbacks(s, None, None, None), "success", s, ENV)
    assert {r.destination.sink: r.redact for r in rs.routes} == {"langfuse": False, "otel": True}


def test_named_webhook_from_callback_settings() -> None:
    s = settings(
        success_callback=["audit-hook"],
        callback_settings={
            "audit-hook": {"webhook_url": "https://audit.example/x?t=1", "webhook_secret": "s3"}
        },
    )
    rs = route(resolve_callbacks(s, None, None, None), "success", s, ENV)
    (r,) = rs.routes
    assert r.destination.sink == "webhook"
    assert r.destination.options["name"] == "audit-hook"
    assert r.destination.options["secret"] == "s3"
    assert r.destination.label == "webhook audit-hook https://audit.example/x"


def test_misconfigured_and_unknown_callbacks_are_problems_not_routes() -> None:
    s = settings(callbacks=["langfuse", "s3", "prometheus"])
    rs = route(resolve_callbacks(s, None, None, None), "success", s, {})
    assert rs.routes == ()
    reasons = {p.callback: p.reason for p in rs.problems}
    assert set(reasons) == {"langfuse", "s3"}  # prometheus is ingress's, not a problem
    assert "langfuse_public_key" in reasons["langfuse"]


@pytest.mark.parametrize(
    ("env", "exporter", "url"),
    [
        (
            {"OTEL_EXPORTER": "otlp_grpc", "OTEL_ENDPOINT": "http://c:4317"},
            "otlp_grpc",
            "http://c:4317",
        ),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c/custom"}, "otlp_http", "http://c/custom"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/v1/traces"},
            "otlp_http",
            "http://c:4318/v1/traces",
        ),
        ({}, "console", None),
    ],
)
def test_otel_environment(env: dict[str, str], exporter: str, url: str | None) -> None:
    s = settings(callbacks=["otel"])
    (r,) = route(resolve_callbacks(s, None, None, None), "success", s, env).routes
    assert r.destination.options["exporter"] == exporter
    assert r.destination.options["url"] == url


def test_bad_otel_exporter_is_a_problem() -> None:
    s = settings(callbacks=["otel"])
    rs = route(resolve_callbacks(s, None, None, None), "success", s, {"OTEL_EXPORTER": "zipkin"})
    assert rs.routes == ()
    assert "zipkin" in rs.problems[0].reason


def test_parse_headers() -> None:
    assert parse_headers("a=1, b = x%3Dy ,junk") == {"a": "1", "b": "x=y"}
    assert parse_headers({"k": 1}) == {"k": "1"}
    assert parse_headers(None) == {}


def test_router_uses_the_keys_team_when_the_event_has_none() -> None:
    s = settings(callbacks=["langfuse"])
    key = KeyState(token="h", team_id="t")
    team = TeamState(team_id="t", logging_disabled=True)
    router = routing.Router(s, ENV, {"h": key}.get, {"t": team}.get, registry())
    assert router.for_call("h", None, "success").routes == ()
    assert len(router.for_call(None, None, "success").routes) == 1


def test_router_remembers_a_route_until_the_key_or_team_state_changes() -> None:
    s = settings(callbacks=["langfuse"])
    keys = {"h": KeyState(token="h", team_id="t")}
    teams = {"t": TeamState(team_id="t")}
    router = routing.Router(s, ENV, keys.get, teams.get, registry())
    first = router.for_call("h", "t", "success")
    assert router.for_call("h", "t", "success") is first  # worked out once
    assert router.for_call("h", "t", "failure") is not first  # per outcome
    # A KV update replaces the state's object: the next call sees the new settings at once.
    teams["t"] = TeamState(team_id="t", logging_disabled=True)
    assert router.for_call("h", "t", "success").routes == ()
    keys["h"] = KeyState(token="h", team_id="t")
    teams["t"] = TeamState(team_id="t")
    again = router.for_call("h", "t", "success")
    assert again is not first
    assert [r.destination.key for r in again.routes] == [r.destination.key for r in first.routes]
    del keys["h"]  # a deleted key routes as an unknown one
    assert router.for_call("h", "t", "success") is not again


def test_router_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(routing.Router, "CACHE_LIMIT", 3)
    router = routing.Router(settings(callbacks=["langfuse"]), ENV, {}.get, {}.get, registry())
    for i in range(10):
        router.for_call(f"k{i}", None, "success")
        assert len(router._cache) <= 3
