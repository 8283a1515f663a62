"""`./just up` with NATS authorization on: every service connects as its own user and the
whole system still works end to end; nobody else gets in."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.errors import Error as NatsError

from tollgate_devstack.embedded import free_port, port_is_free
from tollgate_shared import permissions

URL_VARS = ("TOLLGATE_NATS_URL", "TOLLGATE_DATABASE_URL", "TOLLGATE_REDIS_URL")
MASTER = {"Authorization": "Bearer sk-1234"}


def _devstack(data_dir: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in URL_VARS}
    env.pop("TOLLGATE_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "tollgate_devstack", "--data-dir", str(data_dir), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _free_base_port() -> int:
    for _ in range(50):
        base = free_port()
        if base + 4 < 65536 and all(port_is_free(base + i) for i in range(1, 5)):
            return base
    raise RuntimeError("no five consecutive free ports")


@pytest.fixture
def up() -> Iterator[tuple[Path, dict[str, Any]]]:
    # Outside pytest's 0700 temp root: PostgreSQL runs as another user and must reach it.
    root = Path(tempfile.mkdtemp(prefix="tollgate-e2e-natsauth-"))
    data_dir = root / "data"
    started = _devstack(data_dir, "up", "--detach", "--base-port", str(_free_base_port()))
    try:
        if started.returncode != 0:
            log = data_dir / "logs" / "supervisor.log"
            text = log.read_text() if log.exists() else ""
            pytest.fail(f"up --detach failed:\n{started.stderr}\n{text[-6000:]}")
        yield data_dir, json.loads((data_dir / "run" / "status.json").read_text())
    finally:
        down = _devstack(data_dir, "down", timeout=150)
        shutil.rmtree(root, ignore_errors=True)
        assert down.returncode == 0, down.stderr


async def _anonymous(url: str) -> None:
    nc = await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0)
    await nc.close()


def test_whole_stack_serves_with_a_nats_user_per_service(
    up: tuple[Path, dict[str, Any]],
) -> None:
    data_dir, status = up
    users_file = data_dir / "nats" / "users.json"
    passwords = json.loads(users_file.read_text())
    assert set(passwords) == set(permissions.USER_NAMES)
    assert len(set(passwords.values())) == len(passwords)
    assert users_file.stat().st_mode & 0o777 == 0o600
    status_text = (data_dir / "run" / "status.json").read_text()
    assert not any(p in status_text for p in passwords.values())

    # Nobody without a user gets in.
    with pytest.raises(NatsError, match="Authorization Violation"):
        asyncio.run(_anonymous(status["servers"]["TOLLGATE_NATS_URL"]))

    base = f"http://127.0.0.1:{status['base_port']}"
    with httpx.Client(base_url=base, timeout=10) as http:
        # A key made by admin (KV write as `admin`) reaches ingress (KV watch as `ingress`).
        made = http.post("/key/generate", headers=MASTER, json={"key_alias": "nats-auth-e2e"})
        assert made.status_code == 200, made.text
        key = made.json()["key"]
        body = {"model": "demo", "messages": [{"role": "user", "content": "Hello"}]}
        deadline = time.monotonic() + 20
        while True:
            answer = http.post(
                "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
            )
            if answer.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert answer.status_code == 200, answer.text
        call_id = answer.headers["x-litellm-call-id"]
        # The event (published as `ingress`) is costed by the ledger (pulled as `ledger`).
        deadline = time.monotonic() + 30
        rows: list[dict[str, Any]] = []
        while not rows and time.monotonic() < deadline:
            rows = http.get("/spend/logs", headers=MASTER, params={"request_id": call_id}).json()
            time.sleep(0.3)
        assert [r["request_id"] for r in rows] == [call_id]
        assert float(rows[0]["spend"]) > 0

    # Every service did all of that within its permissions: NATS refused nothing.
    nats_log = (data_dir / "nats" / "nats.log").read_text()
    assert "Permissions Violation" not in nats_log, nats_log[-4000:]
    assert nats_log.count("authentication error") == 1  # the anonymous attempt above only
