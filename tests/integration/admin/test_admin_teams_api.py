"""Teams, members and team logging callbacks: API answers, KV state, masking."""

from __future__ import annotations

import hashlib
import json

import asyncpg
import httpx
import pytest
from admin_harness import MASTER, error_of, uid
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError

from tollgate_shared import names
from tollgate_shared.sealing import SEALED_PREFIX, Sealer, SealError
from tollgate_shared.state import TeamState, UserState

SECRET = "sk-lf-super-secret-value-0123456789"


async def kv_get(js: JetStreamContext, bucket: str, key: str) -> bytes | None:
    kv = await js.key_value(bucket)
    try:
        return (await kv.get(key)).value
    except KeyNotFoundError:
        return None


async def team_state(js: JetStreamContext, team_id: str) -> TeamState | None:
    raw = await kv_get(js, names.KV_TEAMS, team_id)
    return TeamState.model_validate_json(raw) if raw is not None else None


async def test_team_lifecycle_reaches_kv(admin: httpx.AsyncClient, js: JetStreamContext) -> None:
    team, user = uid("team"), uid("user")
    created = await admin.post(
        "/team/new",
        json={
            "team_id": team,
            "team_alias": "Search",
            "models": ["demo"],
            "max_budget": 100,
            "budget_duration": "30d",
            "metadata": {"cost_center": "42"},
            "members_with_roles": [
                {"role": "admin", "user_id": user, "user_email": "a@example.com"}
            ],
        },
    )
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["team_id"] == team
    assert body["members_with_roles"][0]["user_id"] == user
    state = await team_state(js, team)
    assert state is not None
    assert state.team_alias == "Search"
    assert state.models == ["demo"]
    assert state.logging is None
    assert not state.logging_disabled
    raw_user = await kv_get(js, names.KV_USERS, user)
    assert raw_user is not None
    assert UserState.model_validate_json(raw_user).teams == [team]

    dup = await admin.post("/team/new", json={"team_id": team})
    assert dup.status_code == 400
    assert error_of(dup)["param"] == "team_id"

    upd = await admin.post(
        "/team/update", json={"team_id": team, "blocked": True, "team_alias": "S2"}
    )
    assert upd.status_code == 200
    assert upd.json()["data"]["blocked"] is True
    state = await team_state(js, team)
    assert state is not None
    assert state.blocked
    assert state.team_alias == "S2"

    member = uid("m")
    added = await admin.post(
        "/team/member_add", json={"team_id": team, "member": [{"role": "user", "user_id": member}]}
    )
    assert added.status_code == 200, added.text
    assert {m["user_id"] for m in added.json()["members_with_roles"]} == {user, member}
    assert added.json()["updated_users"][0]["user_id"] == member
    again = await admin.post(
        "/team/member_add", json={"team_id": team, "member": {"role": "user", "user_id": member}}
    )
    assert again.status_code == 400
    removed = await admin.post("/team/member_delete", json={"team_id": team, "user_id": member})
    assert removed.status_code == 200
    assert [m["user_id"] for m in removed.json()["members_with_roles"]] == [user]
    raw_member = await kv_get(js, names.KV_USERS, member)
    assert raw_member is not None
    assert UserState.model_validate_json(raw_member).teams == []
    gone = await admin.post("/team/member_delete", json={"team_id": team, "user_id": member})
    assert gone.status_code == 400

    key = (await admin.post("/key/generate", json={"team_id": team})).json()["key"]
    info = (await admin.get("/team/info", params={"team_id": team})).json()
    assert info["team_info"]["team_alias"] == "S2"
    assert len(info["keys"]) == 1
    listed = (await admin.get("/team/list", params={"user_id": user})).json()
    assert [t["team_id"] for t in listed] == [team]

    deleted = await admin.post("/team/delete", json={"team_ids": [team]})
    assert deleted.status_code == 200
    assert deleted.json() == {"deleted_teams": [team]}
    assert await team_state(js, team) is None
    # As in LiteLLM, the team's keys go with it.
    digest = hashlib.sha256(key.encode()).hexdigest()
    assert await kv_get(js, names.KV_KEYS, digest) is None
    assert (await admin.get("/team/info", params={"team_id": team})).status_code == 404


async def test_team_callbacks_duplicate_masking_and_disable(
    admin: httpx.AsyncClient, js: JetStreamContext, database_url: str
) -> None:
    team = uid("cb")
    await admin.post("/team/new", json={"team_id": team})
    cb = {
        "callback_name": "langfuse",
        "callback_type": "success",
        "callback_vars": {
            "langfuse_public_key": "pk-lf-public-0123456789",
            "langfuse_secret_key": SECRET,
            "langfuse_host": "https://langfuse.example.com",
            "langfuse_password": "os.environ/LANGFUSE_PASSWORD",
        },
    }
    added = await admin.post(f"/team/{team}/callback", json=cb)
    assert added.status_code == 200, added.text
    assert added.json()["status"] == "success"
    assert SECRET not in added.text

    dup = await admin.post(f"/team/{team}/callback", json=cb)
    assert dup.status_code == 400
    assert error_of(dup)["param"] == "callback_name"
    other_type = await admin.post(f"/team/{team}/callback", json={**cb, "callback_type": "failure"})
    assert other_type.status_code == 200

    got = await admin.get(f"/team/{team}/callback")
    assert got.status_code == 200
    data = got.json()["data"]
    assert data["success_callbacks"] == ["langfuse"]
    assert data["failure_callbacks"] == ["langfuse"]
    assert SECRET not in got.text
    assert SECRET[-4:] in data["callback_vars"]["langfuse_secret_key"]
    assert data["callback_vars"]["langfuse_host"] == "https://langfuse.example.com"
    # References stay references: never resolved, never masked.
    assert data["callback_vars"]["langfuse_password"] == "os.environ/LANGFUSE_PASSWORD"
    info = await admin.get("/team/info", params={"team_id": team})
    assert SECRET not in info.text
    assert len(info.json()["team_info"]["metadata"]["logging"]) == 2

    state = await team_state(js, team)
    assert state is not None
    assert state.logging is not None
    assert len(state.logging) == 2
    # The exporter needs the real credential: KV carries it sealed (only a holder of the
    # salt or master key opens it), references stay references, the API never shows it.
    sealed = state.logging[0].callback_vars["langfuse_secret_key"]
    assert sealed.startswith(SEALED_PREFIX)
    assert SECRET not in sealed
    assert Sealer(MASTER).open(sealed) == SECRET
    assert state.logging[0].callback_vars["langfuse_password"] == "os.environ/LANGFUSE_PASSWORD"
    with pytest.raises(SealError):
        Sealer("another-master-key-0123456789").open(sealed)
    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetchval(
            "SELECT string_agg(callback_vars::text, ' ') FROM admin.team_callbacks "
            "WHERE team_id = $1",
            team,
        )
    finally:
        await conn.close()
    assert SECRET not in stored

    disabled = await admin.post(f"/team/{team}/disable_logging")
    assert disabled.status_code == 200
    assert disabled.json() == {
        "status": "success",
        "message": f"Logging disabled for team {team}",
        "data": {"team_id": team, "success_callbacks": [], "failure_callbacks": []},
    }
    state = await team_state(js, team)
    assert state is not None
    assert state.logging_disabled
    assert state.logging == []
    got = (await admin.get(f"/team/{team}/callback")).json()["data"]
    assert got["success_callbacks"] == []
    assert got["failure_callbacks"] == []

    # Adding a callback again turns logging back on.
    await admin.post(f"/team/{team}/callback", json=cb)
    state = await team_state(js, team)
    assert state is not None
    assert not state.logging_disabled
    assert len(state.logging or []) == 1


# Bad inputs tried: unknown team, malformed team id in the path, a wrong callback_type,
# nested callback_vars, a missing callback_name, empty team_ids, a member without id or email.
async def test_bad_team_requests(admin: httpx.AsyncClient) -> None:
    missing = uid("missing")
    cb = {"callback_name": "langfuse", "callback_vars": {}}
    r = await admin.post(f"/team/{missing}/callback", json=cb)
    assert r.status_code == 404
    assert error_of(r)["param"] == "team_id"
    r = await admin.post("/team/bad%20id/callback", json=cb)
    assert r.status_code == 400
    assert error_of(r)["param"] == "team_id"
    team = uid("t")
    await admin.post("/team/new", json={"team_id": team})
    r = await admin.post(f"/team/{team}/callback", json={**cb, "callback_type": "sometimes"})
    assert r.status_code == 400
    assert error_of(r)["param"] == "callback_type"
    r = await admin.post(f"/team/{team}/callback", json={**cb, "callback_vars": {"a": {"b": 1}}})
    assert r.status_code == 400
    assert (error_of(r)["param"] or "").startswith("callback_vars")
    r = await admin.post(f"/team/{team}/callback", json={"callback_vars": {}})
    assert r.status_code == 400
    assert error_of(r)["param"] == "callback_name"
    r = await admin.post("/team/delete", json={"team_ids": []})
    assert r.status_code == 400
    assert error_of(r)["param"] == "team_ids"
    r = await admin.post("/team/member_add", json={"team_id": team, "member": {"role": "user"}})
    assert r.status_code == 400
    r = await admin.post("/team/update", json={"team_id": missing})
    assert r.status_code == 404
    r = await admin.get("/team/info", params={"team_id": "no good"})
    assert r.status_code == 400
    assert error_of(r)["param"] == "team_id"
    assert json.loads(r.text)["error"]["type"] == "invalid_request_error"
