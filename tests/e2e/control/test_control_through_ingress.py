"""Management through port 4000: keys, teams and models take effect at ingress within a second,
every change is audited, and each call is attributed to its key, team and user."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from support.configs import MASTER_KEY, write_config
from support.system import System, running_system
from tollgate_devstack.embedded import StackUrls
from tollgate_shared.state import hash_key

MASTER = {"authorization": f"Bearer {MASTER_KEY}"}
CHAT = {"model": "demo", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture(scope="module")
def system(provisioned: StackUrls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    tmp = tmp_path_factory.mktemp("control-e2e")
    cfg = write_config(tmp / "config.yaml")
    with running_system(
        provisioned,
        tmp,
        cfg,
        extra_env={"TOLLGATE_BUDGET_RESET_INTERVAL_S": "0.5"},
        backends=("admin", "ledger"),
    ) as sys_:
        yield sys_


@pytest.fixture
async def http(system: System) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=system.ingress_url, timeout=20) as client:
        yield client


async def chat_status(http: httpx.AsyncClient, key: str, model: str = "demo") -> httpx.Response:
    return await http.post(
        "/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={**CHAT, "model": model},
    )


async def within_a_second(
    http: httpx.AsyncClient, key: str, status: int, model: str = "demo"
) -> httpx.Response:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 1.0
    while True:
        r = await chat_status(http, key, model)
        if r.status_code == status or loop.time() > deadline:
            assert r.status_code == status, r.text
            return r
        await asyncio.sleep(0.02)


async def admin(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await http.post(path, headers=MASTER, json=body)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


async def test_key_lifecycle_is_enforced_at_ingress_within_a_second(
    http: httpx.AsyncClient,
) -> None:
    await admin(http, "/team/new", {"team_id": "e2e-ctl-team", "team_alias": "Control Team"})
    await admin(http, "/user/new", {"user_id": "e2e-ctl-user"})
    gen = await admin(
        http,
        "/key/generate",
        {
            "key_alias": "e2e-ctl-key",
            "team_id": "e2e-ctl-team",
            "user_id": "e2e-ctl-user",
            "models": ["demo"],
        },
    )
    key = gen["key"]
    assert key.startswith("sk-")
    r = await within_a_second(http, key, 200)
    call_id = r.headers["x-litellm-call-id"]

    # A key reads its own info; the plaintext is never shown again.
    info = await http.get("/key/info", headers={"authorization": f"Bearer {key}"})
    assert info.status_code == 200, info.text
    assert key not in info.text

    assert (await chat_status(http, key, "nope")).status_code in (400, 403)
    await admin(http, "/key/block", {"key": key})
    blocked = await within_a_second(http, key, 403)
    assert "blocked" in blocked.json()["error"]["message"]
    await admin(http, "/key/unblock", {"key": key})
    await within_a_second(http, key, 200)
    await admin(http, "/key/delete", {"keys": [key]})
    gone = await within_a_second(http, key, 401)
    assert gone.json()["error"]["code"] == "invalid_key"

    # The call is attributed to its key, team and user in the spend log.
    for _ in range(100):
        rows = (
            await http.get("/spend/logs", headers=MASTER, params={"request_id": call_id})
        ).json()
        if rows:
            break
        await asyncio.sleep(0.1)
    [row] = rows
    assert row["api_key"] == hash_key(key)
    assert (row["team_id"], row["user"]) == ("e2e-ctl-team", "e2e-ctl-user")

    # Every change is in the audit log, newest first, with who made it.
    for _ in range(100):
        audit = (
            await http.get("/audit", headers=MASTER, params={"object_id": hash_key(key)})
        ).json()
        actions = {a["action"] for a in audit["audit_logs"]}
        if {"created", "blocked", "unblocked", "deleted"} <= actions:
            break
        await asyncio.sleep(0.1)
    assert {"created", "blocked", "unblocked", "deleted"} <= actions
    assert key not in str(audit)


async def test_expired_key_is_refused(http: httpx.AsyncClient) -> None:
    gen = await admin(http, "/key/generate", {"key_alias": "e2e-short", "duration": "2s"})
    await within_a_second(http, gen["key"], 200)
    await asyncio.sleep(2.1)
    r = await chat_status(http, gen["key"])
    assert r.status_code == 401
    assert "expired" in r.json()["error"]["message"]


async def test_model_added_through_admin_is_routable_within_a_second(
    http: httpx.AsyncClient,
) -> None:
    await admin(
        http,
        "/model/new",
        {
            "model_name": "e2e-added",
            "litellm_params": {"model": "openai/added", "mock_response": "added reply"},
        },
    )
    r = await within_a_second(http, MASTER_KEY, 200, "e2e-added")
    assert r.json()["choices"][0]["message"]["content"] == "added reply"
    models = (await http.get("/v1/models", headers=MASTER)).json()
    assert "e2e-added" in {m["id"] for m in models["data"]}


async def until(check: Any, timeout: float = 5.0) -> Any:
    """Poll an async check until it returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if result or loop.time() > deadline:
            assert result, "condition not met in time"
            return result
        await asyncio.sleep(0.1)


async def test_spent_budget_refuses_until_its_period_resets(http: httpx.AsyncClient) -> None:
    period = 8  # budget_duration "8s": periods start at multiples of 8 s since the epoch
    gen = await admin(
        http,
        "/key/generate",
        {
            "key_alias": "e2e-budget-key",
            "models": ["demo"],
            "max_budget": 0.000001,
            "budget_duration": f"{period}s",
        },
    )
    key = gen["key"]
    assert gen["budget_reset_at"] is not None
    # Begin just after a boundary, so the steps below happen inside one period.
    await asyncio.sleep(period - time.time() % period + 0.2)
    first = await chat_status(http, key)
    assert first.status_code == 200, first.text
    reset_at = datetime.fromtimestamp((time.time() // period + 1) * period, UTC)

    async def refused() -> httpx.Response | None:
        r = await chat_status(http, key)
        return r if r.status_code == 400 else None

    # The ledger commits the spend, mirrors it to KV, and ingress refuses the key.
    refusal = await until(refused)
    assert datetime.now(UTC) < reset_at, "the refusal must come within the period"
    assert refusal.json()["error"]["type"] == "budget_exceeded"

    # At the boundary the budget reopens with no admin action.
    await asyncio.sleep(max(0.0, (reset_at - datetime.now(UTC)).total_seconds()) + 0.2)
    second = await chat_status(http, key)
    assert second.status_code == 200, second.text

    # The ledger begins the new period: /key/info shows this period's spend only (the
    # first call no longer counts) and when the period ends.
    both = float(first.headers["x-litellm-response-cost"]) + float(
        second.headers["x-litellm-response-cost"]
    )

    async def info_in_new_period() -> dict[str, Any] | None:
        r = await http.get("/key/info", headers=MASTER, params={"key": key})
        out: dict[str, Any] = r.json()["info"]
        return out if out["spend"] < both else None

    info = await until(info_in_new_period)
    assert datetime.fromisoformat(info["budget_reset_at"]) > reset_at

    # The spend logs keep every call: a reset moves the budget's base, never the records.
    async def both_logged() -> list[Any] | None:
        r = await http.get("/spend/logs", headers=MASTER, params={"api_key": hash_key(key)})
        assert r.status_code == 200, r.text
        rows = r.json()
        ok = [row for row in rows if row["status"] == "success"]
        return ok if len(ok) >= 2 else None

    await until(both_logged)


async def test_management_needs_the_master_key(http: httpx.AsyncClient) -> None:
    r = await http.post("/key/generate", json={})
    assert r.status_code == 401
    r = await http.get("/spend/logs")
    assert r.status_code == 401
