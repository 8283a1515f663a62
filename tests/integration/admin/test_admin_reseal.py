"""Salt-key rotation (`python -m tollgate_admin reseal`): every sealed credential in the
tables and KV buckets opens with the new key afterwards, none with the old; a wrong old key
changes nothing; running it twice is harmless."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import asyncpg
import httpx
from admin_harness import MASTER, uid
from nats.js import JetStreamContext

from tollgate_devstack.embedded import StackUrls
from tollgate_shared import names
from tollgate_shared.sealing import SEALED_PREFIX, Sealer, SealError
from tollgate_shared.state import ModelState, TeamState

NEW_SALT = "a-new-salt-key-for-rotation-0123456789"
PROVIDER = "sk-provider-secret-for-rotation-0123"
LANGFUSE = "sk-lf-secret-for-rotation-abcdefgh"


def run_reseal(stack: StackUrls, database_url: str, old: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TOLLGATE_DATABASE_URL": database_url,
        "TOLLGATE_NATS_URL": stack.nats_url,
        "TOLLGATE_MASTER_KEY": MASTER,
        "TOLLGATE_OLD_SALT_KEY": old,
        "TOLLGATE_SALT_KEY": NEW_SALT,
        "TOLLGATE_KV_PRUNE": "false",  # the session's NATS is shared by other tests
    }
    return subprocess.run(
        [sys.executable, "-m", "tollgate_admin", "reseal"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def stored(database_url: str, model_id: str, team: str) -> tuple[str, str]:
    conn = await asyncpg.connect(database_url)
    try:
        params = await conn.fetchval(
            "SELECT litellm_params FROM admin.models WHERE model_id = $1", model_id
        )
        cb = await conn.fetchval(
            "SELECT callback_vars FROM admin.team_callbacks WHERE team_id = $1", team
        )
    finally:
        await conn.close()
    return json.loads(params)["api_key"], json.loads(cb)["langfuse_secret_key"]


def opens(sealer: Sealer, value: str) -> str | None:
    try:
        return sealer.open(value)
    except SealError:
        return None


async def kv_json(js: JetStreamContext, bucket: str, key: str) -> Any:
    return (await (await js.key_value(bucket)).get(key)).value


async def test_reseal_rotates_every_sealed_credential(
    admin: httpx.AsyncClient, js: JetStreamContext, provisioned: StackUrls, database_url: str
) -> None:
    model_id, team = uid("rot-model"), uid("rot-team")
    created = await admin.post(
        "/model/new",
        json={
            "model_name": "rot",
            "litellm_params": {"model": "openai/x", "api_key": PROVIDER},
            "model_info": {"id": model_id},
        },
    )
    assert created.status_code == 200, created.text
    await admin.post("/team/new", json={"team_id": team})
    added = await admin.post(
        f"/team/{team}/callback",
        json={
            "callback_name": "langfuse",
            "callback_vars": {"langfuse_secret_key": LANGFUSE, "langfuse_host": "https://h"},
        },
    )
    assert added.status_code == 200, added.text
    old, new = Sealer(MASTER), Sealer(NEW_SALT)
    before = await stored(database_url, model_id, team)
    assert all(v.startswith(SEALED_PREFIX) for v in before)
    assert [opens(old, v) for v in before] == [PROVIDER, LANGFUSE]

    # A wrong old key: refused, nothing changed.
    wrong = run_reseal(provisioned, database_url, old="not-the-key-in-use-0123456789")
    assert wrong.returncode == 1, wrong.stderr
    assert "nothing changed" in wrong.stderr
    assert await stored(database_url, model_id, team) == before

    done = run_reseal(provisioned, database_url, old=MASTER)
    assert done.returncode == 0, done.stderr
    after = await stored(database_url, model_id, team)
    assert [opens(new, v) for v in after] == [PROVIDER, LANGFUSE]
    assert [opens(old, v) for v in after] == [None, None]
    # The hint shown in masked reads survives.
    assert after[0].split(".")[0] == before[0].split(".")[0]

    # KV carries what ingress and the exporter open: re-sealed too.
    model = ModelState.model_validate_json(await kv_json(js, names.KV_MODELS, model_id))
    assert opens(new, model.litellm_params["api_key"]) == PROVIDER
    team_state = TeamState.model_validate_json(await kv_json(js, names.KV_TEAMS, team))
    assert team_state.logging is not None
    assert opens(new, team_state.logging[0].callback_vars["langfuse_secret_key"]) == LANGFUSE

    # Interrupted and run again: nothing left to do, nothing broken.
    again = run_reseal(provisioned, database_url, old=MASTER)
    assert again.returncode == 0, again.stderr
    assert await stored(database_url, model_id, team) == after
