"""Key resolution, model access, budgets, and the router's cooldowns (pure logic)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest

from support.builders import key_state, team_state
from tollgate_ingress.auth import (
    AuthError,
    RateLimit,
    authenticate,
    check_budgets,
    check_model_access,
)
from tollgate_ingress.forwarding import Owners
from tollgate_ingress.routing import Router, deployments_from
from tollgate_ingress.service import Gateway, StateViews
from tollgate_shared.config import ModelEntry, RouterSettings, TollgateConfig
from tollgate_shared.state import (
    KeyState,
    ModelState,
    SpendState,
    TeamState,
    UserState,
    hash_key,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
KEY = "sk-test-abc"
H = hash_key(KEY)


def keys(**kw: object) -> dict[str, KeyState]:
    return {H: key_state(token=H, key_alias="alias", team_id="team-a", user_id="u1", **kw)}


TEAMS = {"team-a": team_state(team_id="team-a", team_alias="Team A")}


class _View(dict[str, Any]):
    """A watched KV bucket as the service reads it (no NATS)."""

    def items(self) -> Any:  # type: ignore[override]
        return self


def test_the_caller_is_identified_by_the_shared_key_header_rule() -> None:
    """`x-litellm-api-key` first, then `Authorization` (Bearer or bare), as in every service."""
    views = StateViews(
        keys=_View(keys()),  # type: ignore[arg-type]
        teams=_View(TEAMS),  # type: ignore[arg-type]
        users=_View(),  # type: ignore[arg-type]
        models=_View(),  # type: ignore[arg-type]
        spend=_View(),  # type: ignore[arg-type]
    )
    gw = Gateway(TollgateConfig(), "sk-master", None, None, views, 1.0)  # type: ignore[arg-type]
    both = {"x-litellm-api-key": KEY, "authorization": "Bearer sk-master"}
    assert gw.identify(both).api_key_hash == H
    assert gw.identify({"authorization": f"bearer  {KEY} "}).api_key_hash == H
    assert gw.identify({"authorization": "sk-master"}).is_master
    with pytest.raises(AuthError) as info:
        gw.identify({"authorization": ""})
    assert info.value.code == "missing_key"


def test_master_key_and_virtual_key_identity() -> None:
    assert authenticate("sk-master", "sk-master", {}, {}, {}, NOW).is_master
    ident = authenticate(KEY, "sk-master", keys(), TEAMS, {}, NOW)
    assert (
        ident.api_key_hash,
        ident.key_alias,
        ident.team_id,
        ident.team_alias,
        ident.user_id,
    ) == (H, "alias", "team-a", "Team A", "u1")


@pytest.mark.parametrize(
    ("token", "ks", "status", "code"),
    [
        (None, {}, 401, "missing_key"),
        ("sk-unknown", {}, 401, "invalid_key"),
        (KEY, keys(blocked=True), 403, "key_blocked"),
        (KEY, keys(expires=NOW - timedelta(seconds=1)), 401, "key_expired"),
    ],
)
def test_refusals_say_why(
    token: str | None, ks: dict[str, KeyState], status: int, code: str
) -> None:
    with pytest.raises(AuthError) as info:
        authenticate(token, "sk-master", ks, TEAMS, {}, NOW)
    assert (info.value.status, info.value.code) == (status, code)


def test_blocked_team_refuses_its_keys() -> None:
    teams = {"team-a": TeamState(team_id="team-a", blocked=True)}
    with pytest.raises(AuthError, match="team team-a is blocked"):
        authenticate(KEY, None, keys(), teams, {}, NOW)


def test_model_access_by_key_and_team() -> None:
    ident = authenticate(KEY, None, keys(models=["gpt-a"]), TEAMS, {}, NOW)
    check_model_access(ident, "gpt-a")
    with pytest.raises(AuthError, match="not allowed to access model 'gpt-b'"):
        check_model_access(ident, "gpt-b")
    teams = {"team-a": TeamState(team_id="team-a", models=["gpt-c"])}
    ident = authenticate(KEY, None, keys(), teams, {}, NOW)
    with pytest.raises(AuthError, match="Team team-a"):
        check_model_access(ident, "gpt-a")


def test_budget_exceeded_from_ledger_totals() -> None:
    ident = authenticate(KEY, None, keys(max_budget=Decimal("1.00")), TEAMS, {}, NOW)
    check_budgets(ident, {f"key.{H}": SpendState(entity="key", entity_id=H, spend=Decimal("0.99"))})
    with pytest.raises(AuthError, match="Budget has been exceeded"):
        check_budgets(
            ident, {f"key.{H}": SpendState(entity="key", entity_id=H, spend=Decimal("1.00"))}
        )


def test_rate_limits_of_key_team_and_user_are_all_collected() -> None:
    teams = {"team-a": TeamState(team_id="team-a", rpm_limit=100, tpm_limit=5000)}
    users = {"u1": UserState(user_id="u1", tpm_limit=900)}
    ident = authenticate(KEY, None, keys(rpm_limit=10), teams, users, NOW)
    assert ident.rate_limits == (
        RateLimit("key", H, 10, None),
        RateLimit("team", "team-a", 100, 5000),
        RateLimit("user", "u1", None, 900),
    )
    assert ident.counts_tokens
    unlimited = authenticate(KEY, None, keys(), TEAMS, {}, NOW)
    assert unlimited.rate_limits == ()
    assert not unlimited.counts_tokens


def test_a_spent_budget_reopens_when_its_period_ends() -> None:
    ident = authenticate(KEY, None, keys(max_budget=Decimal("1.00")), TEAMS, {}, NOW)
    spent = SpendState(
        entity="key",
        entity_id=H,
        spend=Decimal("5"),
        period_start=NOW - timedelta(days=1),
        budget_reset_at=NOW + timedelta(seconds=1),
    )
    with pytest.raises(AuthError, match="Budget has been exceeded"):
        check_budgets(ident, {f"key.{H}": spent}, NOW)
    # The period is over even though the ledger has not announced the next one yet.
    check_budgets(ident, {f"key.{H}": spent}, NOW + timedelta(seconds=1))


def _router(**settings: object) -> Router:
    entries = [
        ModelEntry.model_validate(
            {
                "model_name": "g",
                "litellm_params": {"model": "openai/x", "api_base": f"http://b{i}"},
                "model_info": {"id": f"d{i}"},
            }
        )
        for i in range(2)
    ]
    r = Router(RouterSettings(**settings), random.Random(1))  # type: ignore[arg-type]
    r.set_deployments(
        deployments_from(
            entries,
            [ModelState(model_id="d9", model_name="h", litellm_params={"model": "openai/y"})],
        )
    )
    return r


def test_admin_models_join_config_models() -> None:
    r = _router()
    assert sorted(r.model_names()) == ["g", "h"]
    assert r.pick("h", 0.0).model_id == "d9"  # type: ignore[union-attr]
    assert r.pick("nope", 0.0) is None


def test_cooldown_after_allowed_fails_then_recovery() -> None:
    r = _router(allowed_fails=1, cooldown_time=10)
    d0 = next(d for d in r.group("g") if d.model_id == "d0")
    assert r.record_failure(d0, 503, 0.0) is None
    assert r.record_failure(d0, 400, 0.5) is None  # a client error says nothing of health
    change = r.record_failure(d0, 503, 1.0)
    assert change is not None
    assert change.state == "cooled_down"
    assert all(r.pick("g", 2.0).model_id == "d1" for _ in range(20))  # type: ignore[union-attr]
    assert r.record_success(d0, 5.0) is None  # still cooling
    assert r.record_success(d0, 12.0).state == "recovered"  # type: ignore[union-attr]


def test_fallbacks_from_router_settings() -> None:
    r = _router(fallbacks=[{"g": ["h"]}])
    assert r.fallbacks_for("g") == ["h"]
    assert r.fallbacks_for("h") == []


def test_forwarded_paths_reach_their_owner() -> None:
    o = Owners("http://a", "http://l", "http://e", "http://al")
    assert o.url_for("/key/generate") == "http://a/key/generate"
    assert o.url_for("/key/health") == "http://e/key/health"
    assert o.url_for("/spend/logs") == "http://l/spend/logs"
    assert o.url_for("/health/services") == "http://al/health/services"
    assert o.url_for("/keys") is None
    assert o.url_for("/v1/chat/completions") is None


def test_refusals_use_the_shared_error_body() -> None:
    """The type follows the status, except LiteLLM's own `budget_exceeded`."""
    ident = authenticate(KEY, None, keys(max_budget=Decimal("1.00")), TEAMS, {}, NOW)
    spent = {f"key.{H}": SpendState(entity="key", entity_id=H, spend=Decimal("2"))}
    with pytest.raises(AuthError) as budget:
        check_budgets(ident, spent)
    with pytest.raises(AuthError) as blocked:
        authenticate(KEY, None, keys(blocked=True), TEAMS, {}, NOW)
    assert orjson.loads(budget.value.body())["error"]["type"] == "budget_exceeded"
    assert orjson.loads(blocked.value.body())["error"] == {
        "message": "API key alias is blocked",
        "type": "auth_error",
        "param": None,
        "code": "key_blocked",
    }
