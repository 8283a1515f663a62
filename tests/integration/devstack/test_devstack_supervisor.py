"""The dev stack as a person runs it: servers keep data across restarts; `up` starts and stops."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from litestar import Litestar, get

from support.fake_upstream import serve_in_thread
from tollgate_devstack.embedded import free_port, port_is_free
from tollgate_shared import names
from tollgate_shared.publishing import connect_nats

URL_VARS = ("TOLLGATE_NATS_URL", "TOLLGATE_DATABASE_URL", "TOLLGATE_REDIS_URL")


def _env() -> dict[str, str]:
    """The test process's environment without server URLs: the embedded servers start."""
    env = {k: v for k, v in os.environ.items() if k not in URL_VARS}
    env.pop("TOLLGATE_CONFIG", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _devstack(data_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "tollgate_devstack", "--data-dir", str(data_dir), *args]


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    urls: dict[str, str]
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


@contextlib.contextmanager
def servers(data_dir: Path, log: Path) -> Iterator[Running]:
    """`python -m tollgate_devstack servers --provision` until the block ends (then SIGINT)."""
    with log.open("ab") as err:
        proc = subprocess.Popen(
            _devstack(data_dir, "servers", "--provision"),
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=err,
        )
    assert proc.stdout is not None
    urls: dict[str, str] = {}
    while len(urls) < 3:
        line = proc.stdout.readline().decode()
        if not line:
            proc.wait(10)
            pytest.fail(f"servers exited ({proc.returncode}):\n{log.read_text()}")
        assert line.startswith("export TOLLGATE_"), line
        name, value = line.removeprefix("export ").strip().split("=", 1)
        urls[name] = value.strip("'")
    running = Running(proc, urls, log)
    try:
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise


async def _write(urls: dict[str, str], token: str) -> None:
    nc = await connect_nats(urls["TOLLGATE_NATS_URL"], "devstack-test")
    try:
        kv = await nc.jetstream().key_value(names.KV_SPEND)
        await kv.put(f"persist-{token}", token.encode())
    finally:
        await nc.drain()
    conn = await asyncpg.connect(urls["TOLLGATE_DATABASE_URL"])
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS devstack_persist (token text PRIMARY KEY)")
        await conn.execute("INSERT INTO devstack_persist VALUES ($1)", token)
    finally:
        await conn.close()
    r = aioredis.from_url(urls["TOLLGATE_REDIS_URL"])
    try:
        await r.set(f"persist-{token}", token)
    finally:
        await r.aclose()


async def _read(urls: dict[str, str], token: str) -> tuple[str, str, str]:
    nc = await connect_nats(urls["TOLLGATE_NATS_URL"], "devstack-test")
    try:
        kv = await nc.jetstream().key_value(names.KV_SPEND)
        entry = await kv.get(f"persist-{token}")
        in_kv = (entry.value or b"").decode()
    finally:
        await nc.drain()
    conn = await asyncpg.connect(urls["TOLLGATE_DATABASE_URL"])
    try:
        in_pg = await conn.fetchval("SELECT token FROM devstack_persist WHERE token = $1", token)
    finally:
        await conn.close()
    r = aioredis.from_url(urls["TOLLGATE_REDIS_URL"])
    try:
        in_redis = (await r.get(f"persist-{token}") or b"").decode()
    finally:
        await r.aclose()
    return in_kv, str(in_pg), in_redis


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


def test_servers_keep_their_data_across_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    token = uuid.uuid4().hex
    with servers(data_dir, tmp_path / "first.log") as first:
        asyncio.run(_write(first.urls, token))
    assert first.proc.returncode == 0, first.stderr()
    assert "stopped; data kept in" in first.stderr()
    # Everything it started is gone: the ports are free and PostgreSQL shut down.
    assert port_is_free(_port(first.urls["TOLLGATE_NATS_URL"]))
    assert port_is_free(_port(first.urls["TOLLGATE_REDIS_URL"]))
    assert not (data_dir / "pg" / "postmaster.pid").exists()

    with servers(data_dir, tmp_path / "second.log") as second:
        assert "first start" not in second.stderr()
        assert asyncio.run(_read(second.urls, token)) == (token, token, token)
        # SIGTERM stops it as cleanly as Ctrl-C does.
        second.proc.send_signal(signal.SIGTERM)
        second.proc.wait(60)
    assert second.proc.returncode == 0, second.stderr()
    assert not (data_dir / "pg" / "postmaster.pid").exists()


def _free_base_port() -> int:
    for _ in range(50):
        base = free_port()
        if base + 4 < 65536 and all(port_is_free(base + i) for i in range(1, 5)):
            return base
    raise RuntimeError("no five consecutive free ports")


@get("/health", sync_to_thread=False)
def _fake_health() -> dict[str, str]:
    return {"service": "ingress", "status": "healthy"}


def test_up_refuses_a_busy_port_and_starts_nothing(tmp_path: Path) -> None:
    base = _free_base_port()
    with serve_in_thread(Litestar([_fake_health]), port=base):
        done = subprocess.run(
            _devstack(tmp_path / "data", "up", "--base-port", str(base)),
            env=_env(),
            capture_output=True,
            timeout=60,
            check=False,
        )
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert f"port {base} (for ingress) is already in use by tollgate's ingress service" in err
    assert "Tollgate looks already up" in err
    assert not (tmp_path / "data" / "nats").exists(), "nothing may start on a port conflict"


def test_up_runs_every_service_and_stops_cleanly(tmp_path: Path) -> None:
    base = _free_base_port()
    out, err = tmp_path / "up.out", tmp_path / "up.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(
            _devstack(tmp_path / "data", "up", "--base-port", str(base), "--health-timeout", "150"),
            env=_env(),
            stdout=o,
            stderr=e,
        )
    try:
        deadline = time.monotonic() + 170
        while "Tollgate is up." not in err.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"up did not come up:\n{err.read_text()}\n{out.read_text()[-6000:]}")
            time.sleep(0.5)
        text = err.read_text()
        for name in ("ledger", "admin"):
            assert f"applying {name} migrations" in text
        for i in range(5):
            health = httpx.get(f"http://127.0.0.1:{base + i}/health", timeout=5)
            assert health.status_code == 200, health.text
        assert f"curl http://127.0.0.1:{base}/v1/chat/completions" in text
        assert f"http://127.0.0.1:{base}/spend/logs" in text
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    text = err.read_text()
    assert proc.returncode == 0, text
    assert "services stopped" in text
    assert "stopped; data kept in" in text
    for i in range(5):
        assert port_is_free(base + i), f"port {base + i} still in use after stop"
    assert not (tmp_path / "data" / "pg" / "postmaster.pid").exists()
