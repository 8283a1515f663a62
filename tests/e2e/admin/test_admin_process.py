"""The admin service as a process: `migrate`, then a key's life through plain HTTP."""

from __future__ import annotations

import os
import subprocess
import sys

import asyncpg
import httpx
from admin_e2e_harness import E2E_MASTER
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError

from support.processes import Service
from tollgate_devstack.embedded import StackUrls
from tollgate_shared import names
from tollgate_shared.state import KeyState


def run_migrate(database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TOLLGATE_DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "tollgate_admin", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_migrate_command_is_idempotent(stack: StackUrls, database_url: str) -> None:
    first = run_migrate(database_url)
    assert first.returncode == 0, first.stderr
    assert "applied: [1]" in first.stderr
    second = run_migrate(database_url)
    assert second.returncode == 0, second.stderr
    assert "none pending" in second.stderr
    conn = await asyncpg.connect(database_url)
    try:
        tables = {
            r["table_name"]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'admin'"
            )
        }
    finally:
        await conn.close()
    assert {
        "keys",
        "teams",
        "team_members",
        "users",
        "models",
        "team_callbacks",
        "outbox",
        "schema_migrations",
    } <= tables


async def test_key_lifecycle_over_http(admin_service: Service, js: JetStreamContext) -> None:
    headers = {"Authorization": f"Bearer {E2E_MASTER}"}
    async with httpx.AsyncClient(base_url=admin_service.url, headers=headers) as client:
        created = await client.post(
            "/key/generate", json={"metadata": {"user": "audit-test@example.com"}}
        )
        assert created.status_code == 200, created.text
        token = created.json()["token_id"]
        kv = await js.key_value(names.KV_KEYS)
        state = KeyState.model_validate_json((await kv.get(token)).value or b"")
        assert state.metadata == {"user": "audit-test@example.com"}
        deleted = await client.post("/key/delete", json={"keys": [created.json()["key"]]})
        assert deleted.status_code == 200
        try:
            await kv.get(token)
        except KeyNotFoundError:
            pass
        else:
            raise AssertionError("the deleted key is still in KV")
        docs = await client.get("/schema/swagger")
        assert docs.status_code == 200
        assert "swagger" in docs.text.lower()
