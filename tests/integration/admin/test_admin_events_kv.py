"""AdminChanged events on the ADMIN stream, and KV repair from PostgreSQL on start."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
from admin_harness import MASTER, admin_events, admin_settings, uid
from asgi_lifespan import LifespanManager
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from tollgate_admin import store
from tollgate_admin.app import create_app
from tollgate_devstack.embedded import StackUrls
from tollgate_shared import names
from tollgate_shared.config import load_config

SECRET = "sk-lf-event-secret-0123456789abcdef"


async def test_every_key_change_is_an_event_with_before_and_after(
    admin: httpx.AsyncClient, js: JetStreamContext
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    created = await admin.post(
        "/key/generate",
        json={"key_alias": uid("ev"), "metadata": {"user": "audit-test@example.com"}},
        headers={"litellm-changed-by": "alice@example.com"},
    )
    key = created.json()["key"]
    digest = hashlib.sha256(key.encode()).hexdigest()
    await admin.post("/key/update", json={"key": key, "max_budget": 7})
    await admin.post("/key/block", json={"key": key})
    await admin.post("/key/unblock", json={"key": key})
    rotated = (await admin.post("/key/regenerate", json={"key": key})).json()
    new_digest = rotated["token_id"]
    await admin.post("/key/delete", json={"keys": [rotated["key"]]})

    events = await admin_events(js, since)
    mine = [e for e in events if e.object_id in (digest, new_digest)]
    assert [(e.entity, e.action) for e in mine] == [
        ("key", "created"),
        ("key", "updated"),
        ("key", "blocked"),
        ("key", "unblocked"),
        ("key", "rotated"),
        ("key", "deleted"),
    ]
    created_ev, updated_ev, blocked_ev, _, rotated_ev, deleted_ev = mine
    assert created_ev.subject() == "admin.key.created.v1"
    assert created_ev.changed_by == "alice@example.com"
    assert updated_ev.changed_by == "master_key"
    assert created_ev.changed_by_api_key == hashlib.sha256(MASTER.encode()).hexdigest()
    assert created_ev.before_value is None
    assert created_ev.updated_values is not None
    assert created_ev.updated_values["metadata"] == {"user": "audit-test@example.com"}
    assert updated_ev.before_value is not None
    assert updated_ev.before_value["max_budget"] is None
    assert updated_ev.updated_values == {"max_budget": 7.0}
    assert blocked_ev.updated_values == {"blocked": True}
    assert rotated_ev.object_id == new_digest
    assert rotated_ev.updated_values is not None
    assert rotated_ev.updated_values["previous_token"] == digest
    assert deleted_ev.before_value is not None
    assert deleted_ev.updated_values is None
    # Neither plaintext key ever appears in an event.
    dump = json.dumps([e.model_dump(mode="json") for e in events])
    assert key not in dump
    assert rotated["key"] not in dump
    assert MASTER not in dump


async def test_team_events_mask_callback_secrets(
    admin: httpx.AsyncClient, js: JetStreamContext
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    team, member = uid("evt"), uid("mem")
    await admin.post("/team/new", json={"team_id": team})
    await admin.post(
        "/team/member_add", json={"team_id": team, "member": {"role": "user", "user_id": member}}
    )
    await admin.post("/team/member_delete", json={"team_id": team, "user_id": member})
    await admin.post(
        f"/team/{team}/callback",
        json={"callback_name": "langfuse", "callback_vars": {"langfuse_secret_key": SECRET}},
    )
    await admin.post(f"/team/{team}/disable_logging")
    await admin.post("/team/delete", json={"team_ids": [team]})
    events = await admin_events(js, since, team)
    assert [e.action for e in events] == [
        "created",
        "member_added",
        "member_removed",
        "callback_added",
        "logging_disabled",
        "deleted",
    ]
    assert all(e.entity == "team" for e in events)
    cb = events[3]
    assert cb.before_value == {"logging": []}
    assert cb.updated_values is not None
    assert cb.updated_values["logging"][0]["callback_name"] == "langfuse"
    dump = json.dumps([e.model_dump(mode="json") for e in events])
    assert SECRET not in dump
    users = await admin_events(js, since, member)
    assert [(e.entity, e.action) for e in users] == [("user", "created")]


async def test_start_repairs_kv_from_postgres(
    provisioned: StackUrls, database_url: str, js: JetStreamContext
) -> None:
    app = create_app(admin_settings(provisioned, database_url), load_config(None))
    headers = {"Authorization": f"Bearer {MASTER}"}
    async with (
        LifespanManager(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://a", headers=headers
        ) as client,
    ):
        token = (await client.post("/key/generate", json={})).json()["token_id"]
        team = uid("rep")
        await client.post("/team/new", json={"team_id": team})
    keys = await js.key_value(names.KV_KEYS)
    teams = await js.key_value(names.KV_TEAMS)
    # Someone (or a failed write) damaged the buckets while admin was down.
    await keys.delete(token)
    await teams.put(team, b"{not json")
    app = create_app(admin_settings(provisioned, database_url), load_config(None))
    async with LifespanManager(app):
        assert (await keys.get(token)).value
        repaired = (await teams.get(team)).value or b""
        assert json.loads(repaired)["team_id"] == team


async def test_health_and_metrics(admin: httpx.AsyncClient) -> None:
    health = await admin.get("/health", headers={"Authorization": ""})
    assert health.status_code == 200
    assert set(health.json()["dependencies"]) == {"nats", "postgres"}
    metrics = await admin.get("/metrics")
    assert "tollgate_admin_kv_writes_total" in metrics.text
    doc = (await admin.get("/schema/openapi.json")).json()
    ops = [op for path in doc["paths"].values() for op in path.values()]
    assert all(op.get("operationId") and op.get("description") for op in ops)
    assert (await admin.get("/schema/swagger")).status_code == 200


async def test_injected_connections_are_used_and_left_open(
    provisioned: StackUrls, database_url: str, nc: NATS
) -> None:
    pool = await asyncpg.create_pool(
        database_url, min_size=1, max_size=2, init=store.init_connection
    )
    try:
        app = create_app(
            admin_settings(provisioned, database_url), load_config(None), pool=pool, nc=nc
        )
        headers = {"Authorization": f"Bearer {MASTER}"}
        async with (
            LifespanManager(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://a", headers=headers
            ) as client,
        ):
            token = (await client.post("/key/generate", json={})).json()["token_id"]
        # The app stopped; the connections it was given are still the caller's to use.
        assert nc.is_connected
        found = await pool.fetchval("SELECT count(*) FROM admin.keys WHERE token = $1", token)
        assert found == 1
    finally:
        await pool.close()
