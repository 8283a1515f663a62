"""`./just up --detach` as a service manager: kill -9 one component under load, the rest serve.

Short form (in `./just test`): the ledger and Redis. Long form (every service and
server, `./just test-supervision`): set TOLLGATE_SUPERVISION_LONG=1.
Afterwards every call made has exactly one spend row: nothing lost, nothing
counted twice.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tollgate_devstack.embedded import free_port, port_is_free

URL_VARS = ("TOLLGATE_NATS_URL", "TOLLGATE_DATABASE_URL", "TOLLGATE_REDIS_URL")
LONG = os.environ.get("TOLLGATE_SUPERVISION_LONG") == "1"
VICTIMS = (
    ("ledger", "redis", "nats", "postgres", "admin", "exporter", "alerter")
    if LONG
    else ("ledger", "redis")
)
# First restart comes after 1 s; a Python service needs a few seconds to answer /health.
RECOVERY_BOUND_S = 1.0 + 30.0


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in URL_VARS}
    env.pop("TOLLGATE_CONFIG", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _devstack(data_dir: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tollgate_devstack", "--data-dir", str(data_dir), *args],
        env=_env(),
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


@dataclass
class Load:
    """A bounded loop of real chat completions against ingress, one at a time."""

    url: str
    session: str
    results: list[tuple[float, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    max_calls: int = 4000
    max_seconds: float = 240.0

    def run(self) -> None:
        body = {
            "model": "demo",
            "messages": [{"role": "user", "content": "Hello"}],
            "metadata": {"session_id": self.session},
        }
        headers = {"Authorization": "Bearer sk-1234"}
        deadline = time.monotonic() + self.max_seconds
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set() and len(self.results) < self.max_calls:
                if time.monotonic() > deadline:
                    break
                try:
                    code = client.post(
                        f"{self.url}/v1/chat/completions", json=body, headers=headers
                    ).status_code
                except httpx.HTTPError:
                    code = 0
                self.results.append((time.monotonic(), code))
                time.sleep(0.03)

    def longest_gap(self, since: float) -> float:
        times = [t for t, _ in self.results if t >= since]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


@pytest.fixture
def data_root() -> Iterator[Path]:
    """Outside pytest's 0700 temp root: PostgreSQL runs as another user and must reach it."""
    root = Path(tempfile.mkdtemp(prefix="tollgate-e2e-devstack-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def detached(data_root: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    data_dir = data_root / "data"
    base = _free_base_port()
    started = _devstack(data_dir, "up", "--detach", "--base-port", str(base))
    log = data_dir / "logs" / "supervisor.log"
    if started.returncode != 0:
        text = log.read_text() if log.exists() else ""
        pytest.fail(f"up --detach failed:\n{started.stderr}\n{started.stdout}\n{text[-6000:]}")
    status = json.loads((data_dir / "run" / "status.json").read_text())
    try:
        yield data_dir, status
    finally:
        down = _devstack(data_dir, "down", timeout=150)
        assert down.returncode == 0, down.stderr


def _unit(data_dir: Path, name: str) -> dict[str, Any]:
    status = json.loads((data_dir / "run" / "status.json").read_text())
    return next(u for u in status["units"] if u["name"] == name)


def _back(data_dir: Path, unit: dict[str, Any], old_pid: int) -> bool:
    now = _unit(data_dir, unit["name"])
    if now["state"] != "running" or now["pid"] in (None, old_pid):
        return False
    if unit["kind"] == "service":
        try:
            return httpx.get(f"http://127.0.0.1:{unit['port']}/health", timeout=1).is_success
        except httpx.HTTPError:
            return False
    return True


async def _spend_rows(database_url: str, session: str) -> tuple[int, int]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetchval(
            "SELECT count(*) FROM ledger.spend_logs WHERE session_id = $1", session
        )
        distinct = await conn.fetchval(
            "SELECT count(DISTINCT request_id) FROM ledger.spend_logs WHERE session_id = $1",
            session,
        )
        return int(rows), int(distinct)
    finally:
        await conn.close()


_PEERS = ("admin", "ledger", "exporter", "alerter")


def _peer_state(ingress: str, name: str) -> str | None:
    try:
        resp = httpx.get(f"{ingress}/health", timeout=2)
    except httpx.HTTPError:
        return None
    assert resp.status_code == 200, resp.text  # a consumer down never fails ingress
    state: str | None = resp.json().get("services", {}).get(name, {}).get("status")
    return state


def test_killed_components_come_back_and_ingress_serves_throughout(
    detached: tuple[Path, dict[str, Any]],
) -> None:
    data_dir, status = detached
    ingress = f"http://127.0.0.1:{status['base_port']}"
    load = Load(ingress, f"supervision-{uuid.uuid4().hex}")
    worker = threading.Thread(target=load.run, name="load")
    worker.start()
    figures: dict[str, dict[str, float]] = {}
    try:
        time.sleep(2)
        for name in VICTIMS:
            unit = _unit(data_dir, name)
            old_pid = unit["pid"]
            killed_at = time.monotonic()
            os.kill(old_pid, signal.SIGKILL)
            deadline = killed_at + RECOVERY_BOUND_S
            if name in _PEERS:
                # Ingress's /health names the service that is down, and stays 200 itself.
                shown = _peer_state(ingress, name)
                while shown != "unhealthy" and not _back(data_dir, unit, old_pid):
                    shown = _peer_state(ingress, name)
                assert shown == "unhealthy", f"ingress /health never showed {name} down"
            while not _back(data_dir, unit, old_pid):
                assert time.monotonic() < deadline, f"{name} not back within {RECOVERY_BOUND_S}s"
                time.sleep(0.1)
            back_at = time.monotonic()
            time.sleep(1)  # keep serving a little after recovery too
            window = [c for t, c in load.results if killed_at <= t <= back_at]
            figures[name] = {
                "recovery_s": round(back_at - killed_at, 1),
                "calls_during_outage": len(window),
                "ok_during_outage": sum(c == 200 for c in window),
                "longest_gap_s": round(load.longest_gap(killed_at), 2),
            }
            assert window, f"no call completed while {name} was down"
            assert all(c == 200 for c in window), (name, window)
            assert _unit(data_dir, name)["restarts"] >= 1
    finally:
        load.stop.set()
        worker.join(30)
    print("\nsupervision figures:", json.dumps(figures, indent=1))
    codes = [c for _, c in load.results]
    assert codes
    assert all(c == 200 for c in codes), {c: codes.count(c) for c in set(codes)}
    assert load.longest_gap(0) < 5.0, "ingress stopped answering for a while"

    # Reconciliation: every call made has exactly one spend row.
    db = status["servers"]["TOLLGATE_DATABASE_URL"]
    deadline = time.monotonic() + 60
    rows, distinct = asyncio.run(_spend_rows(db, load.session))
    while rows < len(codes) and time.monotonic() < deadline:
        time.sleep(0.5)
        rows, distinct = asyncio.run(_spend_rows(db, load.session))
    print(f"calls {len(codes)}, spend rows {rows}, distinct request ids {distinct}")
    assert (rows, distinct) == (len(codes), len(codes))

    # Every supervised component runs and answers; `status` says so (exit code 0). A
    # client's pooled connections to a restarted Redis fail once each before they
    # reconnect, so ingress's /health may take a moment to turn healthy again.
    deadline = time.monotonic() + 45
    shown = _devstack(data_dir, "status")
    while shown.returncode != 0 and time.monotonic() < deadline:
        time.sleep(1)
        shown = _devstack(data_dir, "status")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "consumer lag" in shown.stdout
    assert "LLM/ledger-spend" in shown.stdout
