"""/key/regenerate against LiteLLM's answer (regenerate_key_fn): the same key record under a new
secret — `key` the new plaintext, `token_id` (and `token`) its hash, `key_name` "sk-...last4",
every setting kept unless the body changes it — and LiteLLM's refusals."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from admin_harness import error_of, uid
from nats.js import JetStreamContext

from tollgate_admin import schemas
from tollgate_shared import names
from tollgate_shared.state import SpendState, spend_kv_key

# LiteLLM's GenerateKeyResponse fields a client reads after a rotation.
LITELLM_FIELDS = {
    "key",
    "token_id",
    "token",
    "key_name",
    "key_alias",
    "expires",
    "models",
    "max_budget",
    "spend",
    "user_id",
    "team_id",
    "metadata",
    "budget_duration",
    "tpm_limit",
    "rpm_limit",
    "max_parallel_requests",
    "blocked",
    "created_at",
    "updated_at",
}


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def new_key(admin: httpx.AsyncClient) -> dict[str, Any]:
    resp = await admin.post(
        "/key/generate",
        json={
            "key_alias": uid("rot"),
            "models": ["demo"],
            "max_budget": 5,
            "budget_duration": "30d",
            "user_id": "u-rot",
            "rpm_limit": 7,
            "metadata": {"app": "billing"},
        },
    )
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


@pytest.mark.parametrize("how", ["body_plaintext", "body_hash", "path"])
async def test_regenerate_answers_like_litellm(admin: httpx.AsyncClient, how: str) -> None:
    old = await new_key(admin)
    if how == "path":
        resp = await admin.post(f"/key/{old['key']}/regenerate")
    else:
        ref = old["key"] if how == "body_plaintext" else old["token_id"]
        resp = await admin.post("/key/regenerate", json={"key": ref})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) >= LITELLM_FIELDS
    schemas.GenerateKeyResponse.model_validate(body)
    new = body["key"]
    assert new.startswith("sk-")
    assert new != old["key"]
    assert body["token_id"] == body["token"] == sha(new)
    assert body["key_name"] == f"sk-...{new[-4:]}"
    # The same record: every setting and its creation time carried over.
    for field in (
        "key_alias",
        "models",
        "max_budget",
        "budget_duration",
        "user_id",
        "rpm_limit",
        "metadata",
        "expires",
        "created_at",
    ):
        assert body[field] == old[field], field
    info = await admin.get("/key/info", params={"key": new})
    assert info.json()["info"]["key_alias"] == old["key_alias"]
    gone = await admin.get("/key/info", params={"key": old["key"]})
    assert gone.status_code == 404


async def test_regenerate_with_new_settings_and_a_chosen_key(admin: httpx.AsyncClient) -> None:
    old = await new_key(admin)
    chosen = f"sk-chosen-{uid('k')}"
    resp = await admin.post(
        f"/key/{old['token_id']}/regenerate",
        json={"new_key": chosen, "max_budget": 9, "models": ["a", "b"], "duration": "1h"},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["key"], body["token_id"]) == (chosen, sha(chosen))
    assert (body["max_budget"], body["models"]) == (9, ["a", "b"])
    assert body["key_alias"] == old["key_alias"]
    expires = datetime.fromisoformat(body["expires"])
    assert timedelta(minutes=55) < expires - datetime.now(UTC) <= timedelta(hours=1)


async def test_regenerate_refusals(admin: httpx.AsyncClient) -> None:
    # No key named: 400 (LiteLLM: "No key passed in.").
    err = error_of(await admin.post("/key/regenerate", json={}))
    assert err["param"] == "key"
    # An unknown key: 404 (LiteLLM: "Key ... not found.").
    missing = await admin.post("/key/regenerate", json={"key": "sk-no-such-key-anywhere"})
    assert missing.status_code == 404
    error_of(missing)
    # A chosen key must look like one, and must not be taken.
    old = await new_key(admin)
    bad = await admin.post("/key/regenerate", json={"key": old["key"], "new_key": "plain"})
    assert bad.status_code == 400
    assert error_of(bad)["param"] == "new_key"
    other = await new_key(admin)
    taken = await admin.post("/key/regenerate", json={"key": old["key"], "new_key": other["key"]})
    assert taken.status_code == 400
    assert error_of(taken)["param"] == "new_key"
    # A virtual key may not rotate another key.
    as_other = {"Authorization": f"Bearer {other['key']}"}
    denied = await admin.post("/key/regenerate", json={"key": old["key"]}, headers=as_other)
    assert denied.status_code in (401, 403)
    error_of(denied)
    # Nothing above changed the key.
    still = await admin.get("/key/info", params={"key": old["key"]})
    assert still.status_code == 200


async def test_regenerate_keeps_the_keys_spend(
    admin: httpx.AsyncClient, js: JetStreamContext
) -> None:
    """LiteLLM rotates the secret of the same row, so spend and budget carry over: the
    answer shows the key's spend, and the ledger moves the total to the new hash
    (tests/integration/ledger/test_ledger_key_rotation.py)."""
    old = await new_key(admin)
    spend = await js.key_value(names.KV_SPEND)
    state = SpendState(entity="key", entity_id=old["token_id"], spend=Decimal("1.25"))
    await spend.put(spend_kv_key("key", old["token_id"]), state.model_dump_json().encode())
    assert (await admin.get("/key/info", params={"key": old["key"]})).json()["info"][
        "spend"
    ] == 1.25
    body = (await admin.post("/key/regenerate", json={"key": old["key"]})).json()
    assert body["spend"] == 1.25
