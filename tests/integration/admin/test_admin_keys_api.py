"""Keys against real PostgreSQL and NATS: what the API answers, what KV and the tables hold."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from admin_harness import MASTER, error_of, uid
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError

from tollgate_shared import names
from tollgate_shared.state import KeyState


async def kv_key(js: JetStreamContext, token: str) -> KeyState | None:
    kv = await js.key_value(names.KV_KEYS)
    try:
        entry = await kv.get(token)
    except KeyNotFoundError:
        return None
    return KeyState.model_validate_json(entry.value or b"")


async def test_generate_stores_only_the_hash_and_propagates_to_kv(
    admin: httpx.AsyncClient, js: JetStreamContext, database_url: str
) -> None:
    team = uid("team")
    assert (
        await admin.post("/team/new", json={"team_id": team, "team_alias": "T"})
    ).status_code == 200
    alias = uid("alias")
    resp = await admin.post(
        "/key/generate",
        json={
            "key_alias": alias,
            "team_id": team,
            "user_id": "u-1",
            "models": ["demo"],
            "max_budget": 12.5,
            "budget_duration": "30d",
            "rpm_limit": 10,
            "tpm_limit": 1000,
            "duration": "1h",
            "metadata": {"user": "audit-test@example.com"},
        },
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    key = body["key"]
    assert key.startswith("sk-")
    assert len(key) > 20
    digest = hashlib.sha256(key.encode()).hexdigest()
    assert body["token_id"] == digest == body["token"]
    assert body["key_name"] == f"sk-...{key[-4:]}"
    expires = datetime.fromisoformat(body["expires"])
    assert timedelta(minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=1)

    state = await kv_key(js, digest)
    assert state is not None
    assert (state.token, state.key_alias, state.team_id, state.user_id) == (
        digest,
        alias,
        team,
        "u-1",
    )
    assert state.models == ["demo"]
    assert state.rpm_limit == 10
    assert not state.blocked
    assert state.expires is not None
    assert abs((state.expires - expires).total_seconds()) < 1
    assert str(state.max_budget) == "12.5"

    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow("SELECT * FROM admin.keys WHERE token = $1", digest)
        dump = await conn.fetchval("SELECT string_agg(t::text, '|') FROM admin.keys t")
    finally:
        await conn.close()
    assert row is not None
    assert row["key_alias"] == alias
    assert key not in dump  # the plaintext is never stored

    info = await admin.get("/key/info", params={"key": key})
    assert info.status_code == 200
    assert info.json()["info"]["key_alias"] == alias
    assert "key" not in info.json()["info"]


async def test_block_unblock_update_delete_reach_kv(
    admin: httpx.AsyncClient, js: JetStreamContext
) -> None:
    key = (await admin.post("/key/generate", json={})).json()["key"]
    digest = hashlib.sha256(key.encode()).hexdigest()

    blocked = await admin.post("/key/block", json={"key": key})
    assert blocked.status_code == 200
    assert blocked.json()["blocked"] is True
    state = await kv_key(js, digest)
    assert state is not None
    assert state.blocked

    assert (await admin.post("/key/unblock", json={"key": digest})).json()["blocked"] is False
    assert (await kv_key(js, digest)).blocked is False  # type: ignore[union-attr]

    upd = await admin.post(
        "/key/update", json={"key": key, "models": ["a", "b"], "duration": "30s"}
    )
    assert upd.status_code == 200, upd.text
    state = await kv_key(js, digest)
    assert state is not None
    assert state.models == ["a", "b"]
    assert state.expires is not None
    upd = await admin.post("/key/update", json={"key": key, "duration": "-1"})
    assert (await kv_key(js, digest)).expires is None  # type: ignore[union-attr]

    deleted = await admin.post("/key/delete", json={"keys": [key]})
    assert deleted.status_code == 200
    assert deleted.json() == {"deleted_keys": [key]}
    assert await kv_key(js, digest) is None
    assert (await admin.get("/key/info", params={"key": key})).status_code == 404


async def test_delete_by_alias_is_all_or_nothing(
    admin: httpx.AsyncClient, js: JetStreamContext
) -> None:
    alias = uid("a")
    key = (await admin.post("/key/generate", json={"key_alias": alias})).json()["key"]
    missing = await admin.post("/key/delete", json={"key_aliases": [alias, uid("nope")]})
    assert missing.status_code == 404
    assert error_of(missing)["param"] == "key_aliases"
    assert await kv_key(js, hashlib.sha256(key.encode()).hexdigest()) is not None
    ok = await admin.post("/key/delete", json={"key_aliases": [alias]})
    assert ok.json() == {"deleted_keys": [alias]}
    assert await kv_key(js, hashlib.sha256(key.encode()).hexdigest()) is None


@pytest.mark.parametrize("by_path", [False, True])
async def test_regenerate_replaces_the_kv_entry(
    admin: httpx.AsyncClient, js: JetStreamContext, by_path: bool
) -> None:
    old = (await admin.post("/key/generate", json={"key_alias": uid("r")})).json()["key"]
    old_digest = hashlib.sha256(old.encode()).hexdigest()
    if by_path:
        resp = await admin.post(f"/key/{old}/regenerate", json={"max_budget": 3})
    else:
        resp = await admin.post("/key/regenerate", json={"key": old_digest})
    assert resp.status_code == 200, resp.text
    new = resp.json()["key"]
    new_digest = hashlib.sha256(new.encode()).hexdigest()
    assert new != old
    assert resp.json()["token_id"] == new_digest
    assert await kv_key(js, old_digest) is None
    state = await kv_key(js, new_digest)
    assert state is not None
    assert state.key_name == f"sk-...{new[-4:]}"
    if by_path:
        assert str(state.max_budget) == "3.0"
    # The old key no longer authenticates; the new one reads its own info.
    gone = await admin.get("/key/info", headers={"Authorization": f"Bearer {old}"})
    assert gone.status_code == 401
    own = await admin.get("/key/info", headers={"Authorization": f"Bearer {new}"})
    assert own.status_code == 200
    assert own.json()["info"]["token"] == new_digest


async def test_virtual_key_reads_only_itself(admin: httpx.AsyncClient) -> None:
    mine = (await admin.post("/key/generate", json={})).json()["key"]
    other = (await admin.post("/key/generate", json={})).json()["key"]
    as_mine = {"Authorization": f"Bearer {mine}"}
    assert (await admin.get("/key/info", headers=as_mine)).status_code == 200
    litellm_header = {"Authorization": "", "x-litellm-api-key": mine}
    assert (await admin.get("/key/info", headers=litellm_header)).status_code == 200
    assert (await admin.get("/key/info", params={"key": mine}, headers=as_mine)).status_code == 200
    denied = await admin.get("/key/info", params={"key": other}, headers=as_mine)
    assert denied.status_code == 403
    assert error_of(denied)["type"] == "auth_error"
    for method, path in (("POST", "/key/generate"), ("GET", "/key/list"), ("GET", "/model/info")):
        resp = await admin.request(
            method, path, headers=as_mine, json={} if method == "POST" else None
        )
        assert resp.status_code == 403, (path, resp.text)
    # A blocked key cannot read even itself; an expired one neither.
    await admin.post("/key/block", json={"key": mine})
    assert (await admin.get("/key/info", headers=as_mine)).status_code == 403
    short = (await admin.post("/key/generate", json={"duration": "1s"})).json()["key"]
    await asyncio.sleep(1.2)  # the key's one-second lifetime runs out
    expired = await admin.get("/key/info", headers={"Authorization": f"Bearer {short}"})
    assert expired.status_code == 401
    assert "expired" in error_of(expired)["message"]


async def test_missing_or_wrong_credentials_are_401(admin: httpx.AsyncClient) -> None:
    none = await admin.post("/key/generate", json={}, headers={"Authorization": ""})
    assert none.status_code == 401
    assert error_of(none)["type"] == "auth_error"
    wrong = await admin.get("/team/list", headers={"Authorization": "Bearer sk-not-a-key"})
    assert wrong.status_code == 401
    assert (await admin.get("/team/list", headers={"x-litellm-api-key": MASTER})).status_code == 200


async def test_list_keys_paginates(admin: httpx.AsyncClient) -> None:
    team = uid("lt")
    await admin.post("/team/new", json={"team_id": team})
    made = [(await admin.post("/key/generate", json={"team_id": team})).json() for _ in range(3)]
    page1 = (await admin.get("/key/list", params={"team_id": team, "size": 2})).json()
    assert page1["total_count"] == 3
    assert page1["total_pages"] == 2
    assert len(page1["keys"]) == 2
    assert set(page1["keys"]) <= {m["token_id"] for m in made}
    full = (
        await admin.get(
            "/key/list",
            params={"team_id": team, "page": 2, "size": 2, "return_full_object": "true"},
        )
    ).json()
    assert len(full["keys"]) == 1
    assert full["keys"][0]["team_id"] == team


# Bad inputs tried here: malformed ids, unparseable/zero/huge durations, negative limits,
# NUL characters, a non-sk custom key, a malformed metadata.logging, unknown team, duplicate
# alias, an empty delete request, invalid JSON, a wrong type for models.
@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"team_id": "not an id!"}, "team_id"),
        ({"user_id": "x" * 200}, "user_id"),
        ({"duration": "soon"}, "duration"),
        ({"duration": "0s"}, "duration"),
        ({"duration": "999999999d"}, "duration"),
        ({"budget_duration": "monthly"}, "budget_duration"),
        ({"rpm_limit": -1}, "rpm_limit"),
        ({"max_budget": -5}, "max_budget"),
        ({"key_alias": "nul\u0000byte"}, "key_alias"),
        ({"key": "plain-key-without-prefix"}, "key"),
        ({"metadata": {"logging": [{"callback_type": "success"}]}}, "metadata"),
        ({"metadata": {"x": "a\u0000b"}}, "metadata"),
        ({"models": "demo"}, "models"),
    ],
)
async def test_bad_generate_input_names_the_field(
    admin: httpx.AsyncClient, body: dict[str, object], param: str
) -> None:
    resp = await admin.post("/key/generate", json=body)
    assert resp.status_code == 400, resp.text
    err = error_of(resp)
    assert (err["param"] or "").startswith(param), err
    assert err["type"] == "invalid_request_error"


async def test_other_bad_key_requests(admin: httpx.AsyncClient) -> None:
    unknown_team = await admin.post("/key/generate", json={"team_id": uid("missing")})
    assert unknown_team.status_code == 404
    assert error_of(unknown_team)["param"] == "team_id"
    alias = uid("dup")
    await admin.post("/key/generate", json={"key_alias": alias})
    dup = await admin.post("/key/generate", json={"key_alias": alias})
    assert dup.status_code == 400
    assert error_of(dup)["param"] == "key_alias"
    empty = await admin.post("/key/delete", json={})
    assert empty.status_code == 400
    bad_json = await admin.post(
        "/key/generate", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 400
    assert (await admin.post("/key/block", json={"key": "sk-unknown-key"})).status_code == 404
    assert (await admin.get("/key/info")).status_code == 400  # master key must name a key
