"""Key-scoped reads: a virtual key reads only its own rows through every read route, whatever
its query asks for; the master key reads everything; unknown and blocked keys read nothing."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import pytest
from ledger_support import make_completed
from litestar.testing import AsyncTestClient
from nats.js import JetStreamContext

from support.builders import admin_change
from tollgate_devstack.embedded import StackUrls
from tollgate_ledger.app import create_app
from tollgate_ledger.audit import audit_row
from tollgate_ledger.policy import LedgerPolicy
from tollgate_ledger.projections.audit import AuditProjection
from tollgate_ledger.projections.spend import SpendProjection
from tollgate_ledger.rows import spend_row
from tollgate_ledger.settings import LedgerSettings
from tollgate_shared import names
from tollgate_shared.config import parse_config
from tollgate_shared.names import AdminSubject
from tollgate_shared.state import KeyState, hash_key

MASTER = "sk-ledger-scope-master-key"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def world(pool: asyncpg.Pool, js: JetStreamContext) -> AsyncIterator[dict[str, Any]]:
    """Two teams with one key each (in admin's key bucket), calls of both in one shared session
    and in a session of their own, and an audit row; a third key blocked."""
    tag = uuid.uuid4().hex[:8]
    teams = {"a": f"scope-a-{tag}", "b": f"scope-b-{tag}"}
    keys = {side: f"sk-scope-{side}-{tag}" for side in ("a", "b", "blocked")}
    shared = f"shared-{tag}"
    events = []
    for side, team in teams.items():
        for n in range(3):
            events.append(
                make_completed(
                    team,
                    n,
                    api_key_hash=hash_key(keys[side]),
                    key_alias=f"alias-{side}",
                    user_id=f"user-{side}-{tag}",
                    model=f"model-{side}",
                    session_id=shared if n == 0 else f"{team}-sess",
                    tags=[f"tag-{side}-{tag}"],
                )
            )
    async with pool.acquire() as conn, conn.transaction():
        await SpendProjection(names.SCHEMA_LEDGER).write(
            conn, [spend_row(e, LedgerPolicy(store_prompts=True)) for e in events]
        )
        await AuditProjection(names.SCHEMA_LEDGER).write(
            conn, [audit_row(admin_change(AdminSubject.TEAM_UPDATED, object_id=teams["b"]))]
        )
    kv = await js.key_value(names.KV_KEYS)
    for side, team in teams.items():
        state = KeyState(token=hash_key(keys[side]), key_alias=f"alias-{side}", team_id=team)
        await kv.put(state.token, state.model_dump_json().encode())
    blocked = KeyState(token=hash_key(keys["blocked"]), team_id=teams["a"], blocked=True)
    await kv.put(blocked.token, blocked.model_dump_json().encode())
    try:
        yield {"teams": teams, "keys": keys, "shared": shared, "tag": tag}
    finally:
        for key in keys.values():
            with contextlib.suppress(Exception):
                await kv.delete(hash_key(key))


@pytest.fixture
async def client(
    ledger_db: str, provisioned: StackUrls, world: dict[str, Any]
) -> AsyncIterator[AsyncTestClient[Any]]:
    settings = LedgerSettings(
        nats_url=provisioned.nats_url,
        database_url=ledger_db,
        consumers_enabled=False,
        master_key=None,
        config=None,
    )
    cfg = parse_config({"general_settings": {"master_key": MASTER}})
    async with AsyncTestClient(app=create_app(settings, cfg)) as c:
        yield c


def b_markers(world: dict[str, Any]) -> list[str]:
    """Strings only team B's rows carry."""
    return [
        world["teams"]["b"],
        hash_key(world["keys"]["b"]),
        "alias-b",
        "model-b",
        f"user-b-{world['tag']}",
        f"tag-b-{world['tag']}",
    ]


async def test_a_key_of_team_a_reads_nothing_of_team_b_through_any_route(
    client: AsyncTestClient[Any], world: dict[str, Any]
) -> None:
    a_key, b_hash = world["keys"]["a"], hash_key(world["keys"]["b"])
    team_b = world["teams"]["b"]
    auth = bearer(a_key)
    today = "2000-01-01"
    # Every read route, with filters that ask for team B's rows outright.
    paths = [
        "/spend/logs",
        f"/spend/logs?api_key={b_hash}",
        f"/spend/logs?team_id={team_b}",
        f"/spend/logs?start_date={today}&end_date=2100-01-01",
        f"/spend/logs/v2?api_key={b_hash}",
        f"/spend/logs/ui?team_id={team_b}",
        "/spend/logs/ui",
        f"/spend/logs/ui?tag=tag-b-{world['tag']}",
        "/sessions",
        f"/sessions/{world['shared']}",
        f"/spend/totals?entity=team&entity_id={team_b}",
        f"/spend/totals?entity=key&entity_id={b_hash}",
        "/spend/totals",
        "/global/spend",
        "/global/spend/keys",
        "/global/spend/models",
        "/global/spend/teams",
        "/spend/tags",
        *(f"/spend/daily?group_by={d}" for d in ("key", "team", "user", "model", "tag")),
    ]
    for path in paths:
        r = await client.get(path, headers=auth)
        assert r.status_code == 200, (path, r.text)
        for marker in b_markers(world):
            assert marker not in r.text, (path, marker, r.text[:500])
    # A session of team B alone is not found; the audit log is the master key's.
    r = await client.get(f"/sessions/{team_b}-sess", headers=auth)
    assert r.status_code == 404
    for path in ("/audit", "/audit/logs", "/audit/some-id"):
        assert (await client.get(path, headers=auth)).status_code == 403, path


async def test_a_key_reads_its_own_rows_and_the_master_key_reads_all(
    client: AsyncTestClient[Any], world: dict[str, Any]
) -> None:
    a_hash = hash_key(world["keys"]["a"])
    auth = bearer(world["keys"]["a"])
    mine = (await client.get("/spend/logs/ui", headers=auth)).json()
    assert mine["total"] == 3
    assert {r["api_key"] for r in mine["data"]} == {a_hash}
    # A shared session shows only the key's own turn, with totals of that turn.
    session = (await client.get(f"/sessions/{world['shared']}", headers=auth)).json()
    assert session["request_count"] == 1
    assert session["requests_total"] == 1
    assert [r["api_key"] for r in session["requests"]] == [a_hash]
    sessions = (await client.get("/sessions", headers=auth)).json()
    assert {s["session_id"] for s in sessions["data"]} == {
        world["shared"],
        f"{world['teams']['a']}-sess",
    }
    totals = (await client.get("/spend/totals", headers=auth)).json()["data"]
    assert [(t["entity"], t["entity_id"]) for t in totals] == [("key", a_hash)]
    daily = (await client.get("/spend/daily?group_by=model", headers=auth)).json()
    assert [t["dimension_id"] for t in daily["totals"]] == ["model-a"]
    assert daily["totals"][0]["requests"] == 3

    master = bearer(MASTER)
    shared = (await client.get(f"/sessions/{world['shared']}", headers=master)).json()
    assert shared["request_count"] == 2
    both = (await client.get(f"/spend/logs/ui?session_id={world['shared']}", headers=master)).json()
    assert both["total"] == 2
    assert (await client.get("/audit", headers=master)).status_code == 200
    by_team = orjson.loads((await client.get("/spend/daily?group_by=team", headers=master)).text)
    assert set(world["teams"].values()) <= {t["dimension_id"] for t in by_team["totals"]}


async def test_unknown_and_blocked_keys_read_nothing(
    client: AsyncTestClient[Any], world: dict[str, Any]
) -> None:
    for key in (f"sk-never-issued-{world['tag']}", world["keys"]["blocked"]):
        for path in ("/spend/logs/ui", "/sessions", "/spend/daily", "/audit"):
            r = await client.get(path, headers=bearer(key))
            assert r.status_code == 401, (key, path, r.text)
