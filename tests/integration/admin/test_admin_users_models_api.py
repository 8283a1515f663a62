"""Users and models: API answers and the KV state ingress routes by."""

from __future__ import annotations

import httpx
import pytest
from admin_harness import MASTER, error_of, uid
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError

from tollgate_shared import names
from tollgate_shared.sealing import Sealer
from tollgate_shared.state import ModelState, UserState

PROVIDER_SECRET = "sk-provider-real-secret-abcdefghij"


async def kv_get(js: JetStreamContext, bucket: str, key: str) -> bytes | None:
    kv = await js.key_value(bucket)
    try:
        return (await kv.get(key)).value
    except KeyNotFoundError:
        return None


async def test_user_lifecycle(admin: httpx.AsyncClient, js: JetStreamContext) -> None:
    team, user = uid("team"), uid("user")
    await admin.post("/team/new", json={"team_id": team})
    created = await admin.post(
        "/user/new",
        json={
            "user_id": user,
            "user_email": "u@example.com",
            "user_role": "internal_user",
            "teams": [team],
            "max_budget": 5,
            "key_alias": uid("k"),
        },
    )
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["user_id"] == user
    assert body["teams"] == [team]
    assert body["key"].startswith("sk-")  # LiteLLM creates a key with the user
    raw = await kv_get(js, names.KV_USERS, user)
    assert raw is not None
    state = UserState.model_validate_json(raw)
    assert state.user_email == "u@example.com"
    assert state.teams == [team]
    assert await kv_get(js, names.KV_KEYS, body["token_id"]) is not None

    upd = await admin.post(
        "/user/update", json={"user_id": user, "user_role": "proxy_admin_viewer"}
    )
    assert upd.status_code == 200
    assert upd.json()["data"]["user_role"] == "proxy_admin_viewer"
    by_email = await admin.post(
        "/user/update", json={"user_email": "u@example.com", "max_budget": 9}
    )
    assert by_email.status_code == 200
    assert by_email.json()["user_id"] == user

    info = await admin.get("/user/info", params={"user_id": user})
    assert info.status_code == 200
    assert len(info.json()["keys"]) == 1
    assert info.json()["teams"][0]["team_id"] == team

    deleted = await admin.post("/user/delete", json={"user_ids": [user]})
    assert deleted.status_code == 200
    assert deleted.json() == 1
    assert await kv_get(js, names.KV_USERS, user) is None
    assert await kv_get(js, names.KV_KEYS, body["token_id"]) is None
    team_info = (await admin.get("/team/info", params={"team_id": team})).json()
    assert team_info["team_info"]["members_with_roles"] == []

    no_key = await admin.post("/user/new", json={"auto_create_key": False})
    assert no_key.status_code == 200
    assert no_key.json()["key"] is None


async def test_model_new_update_delete_reach_kv(
    admin: httpx.AsyncClient, js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_id = uid("dep")
    monkeypatch.setenv("TOLLGATE_TEST_UNSET_KEY", "resolved-value-must-not-appear")
    created = await admin.post(
        "/model/new",
        json={
            "model_name": "gpt-test",
            "litellm_params": {
                "model": "openai/gpt-4o-mini",
                "api_base": "http://127.0.0.1:9/v1",
                "api_key": PROVIDER_SECRET,
                "rpm": 10,
            },
            "model_info": {"id": model_id, "mode": "chat"},
        },
    )
    assert created.status_code == 200, created.text
    assert PROVIDER_SECRET not in created.text
    raw = await kv_get(js, names.KV_MODELS, model_id)
    assert raw is not None
    state = ModelState.model_validate_json(raw)
    assert state.model_name == "gpt-test"
    # Ingress needs the provider key: KV carries it sealed, never in plain text.
    assert PROVIDER_SECRET not in state.litellm_params["api_key"]
    assert Sealer(MASTER).open(state.litellm_params["api_key"]) == PROVIDER_SECRET
    assert state.model_info["id"] == model_id

    upd = await admin.post(
        "/model/update",
        json={
            "model_info": {"id": model_id},
            "litellm_params": {"api_key": "os.environ/TOLLGATE_TEST_UNSET_KEY", "rpm": None},
        },
    )
    assert upd.status_code == 200, upd.text
    state = ModelState.model_validate_json(await kv_get(js, names.KV_MODELS, model_id) or b"")
    assert state.litellm_params["api_key"] == "os.environ/TOLLGATE_TEST_UNSET_KEY"
    assert "rpm" not in state.litellm_params

    listed = await admin.get("/model/info")
    assert listed.status_code == 200
    assert "resolved-value-must-not-appear" not in listed.text
    ids = [m["model_info"]["id"] for m in listed.json()["data"]]
    assert model_id in ids
    assert "demo-mock-1" in ids
    one = (await admin.get("/model/info", params={"litellm_model_id": model_id})).json()["data"]
    assert one[0]["litellm_params"]["api_key"] == "os.environ/TOLLGATE_TEST_UNSET_KEY"

    dup = await admin.post(
        "/model/new",
        json={
            "model_name": "x",
            "litellm_params": {"model": "openai/x"},
            "model_info": {"id": model_id},
        },
    )
    assert dup.status_code == 400
    assert error_of(dup)["param"] == "model_info.id"

    deleted = await admin.post("/model/delete", json={"id": model_id})
    assert deleted.status_code == 200
    assert deleted.json() == {"message": f"Model: {model_id} deleted successfully"}
    assert await kv_get(js, names.KV_MODELS, model_id) is None
    again = await admin.post("/model/delete", json={"id": model_id})
    assert again.status_code == 404


# Bad inputs tried: no litellm_params.model, a negative rpm, a malformed model id, a
# config.yaml model (read-only), an unknown user, a duplicate user id, an unknown team.
async def test_bad_user_and_model_requests(admin: httpx.AsyncClient) -> None:
    r = await admin.post("/model/new", json={"model_name": "x", "litellm_params": {}})
    assert r.status_code == 400
    assert (error_of(r)["param"] or "").startswith("litellm_params")
    r = await admin.post(
        "/model/new", json={"model_name": "x", "litellm_params": {"model": "a/b", "rpm": -3}}
    )
    assert r.status_code == 400
    assert error_of(r)["param"] == "litellm_params.rpm"
    r = await admin.post(
        "/model/new",
        json={
            "model_name": "x",
            "litellm_params": {"model": "a/b"},
            "model_info": {"id": "bad id"},
        },
    )
    assert r.status_code == 400
    assert error_of(r)["param"] == "model_info.id"
    r = await admin.post("/model/delete", json={"id": "demo-mock-1"})
    assert r.status_code == 400
    assert error_of(r)["param"] == "id"
    r = await admin.post("/user/update", json={"user_id": uid("ghost"), "max_budget": 1})
    assert r.status_code == 404
    assert error_of(r)["param"] == "user_id"
    user = uid("u")
    await admin.post("/user/new", json={"user_id": user, "auto_create_key": False})
    r = await admin.post("/user/new", json={"user_id": user})
    assert r.status_code == 400
    assert error_of(r)["param"] == "user_id"
    r = await admin.post("/user/new", json={"teams": [uid("noteam")]})
    assert r.status_code == 404
    assert error_of(r)["param"] == "teams"
    r = await admin.post("/user/update", json={"max_budget": 1})
    assert r.status_code == 400
    r = await admin.get("/user/info", params={"user_id": uid("ghost")})
    assert r.status_code == 404
    r = await admin.post("/user/delete", json={"user_ids": [uid("ghost")]})
    assert r.status_code == 404
    assert error_of(r)["param"] == "user_ids"
