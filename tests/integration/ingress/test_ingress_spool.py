"""Nothing is lost while NATS is down: ingress keeps serving, spools, and replays in order."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import httpx
import nats

from support.configs import MASTER_KEY, write_config
from support.events import wait_for_events
from support.processes import start_service, stop_service
from tollgate_devstack.embedded import free_port, nats_server_binary, wait_for_port
from tollgate_shared.provision import provision_url


def start_nats(port: int, store: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, proc, "nats-server")
    return proc


async def test_events_spooled_while_nats_is_down_are_replayed_in_order(tmp_path: Path) -> None:
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    server = start_nats(port, tmp_path / "js")
    await provision_url(url)
    cfg = write_config(tmp_path / "config.yaml")
    svc = start_service(
        "tollgate_ingress",
        free_port(),
        {
            "TOLLGATE_NATS_URL": url,
            "TOLLGATE_CONFIG": str(cfg),
            "TOLLGATE_SPOOL_PATH": str(tmp_path / "spool.sqlite3"),
        },
        tmp_path,
    )
    ids: list[str] = []
    try:
        server.terminate()
        server.wait(10)
        async with httpx.AsyncClient(base_url=svc.url, timeout=10) as http:
            for i in range(5):
                r = await http.post(
                    "/v1/chat/completions",
                    headers={"authorization": f"Bearer {MASTER_KEY}"},
                    json={
                        "model": "demo",
                        "messages": [{"role": "user", "content": f"n{i}"}],
                        "metadata": {"tags": ["spool-test"]},
                    },
                )
                assert r.status_code == 200  # serving continues without NATS
                ids.append(r.headers["x-litellm-call-id"])
            health = (await http.get("/health")).json()
            assert health["dependencies"]["nats"]["status"] == "unhealthy"
            server = start_nats(port, tmp_path / "js")
            for _ in range(100):
                if (await http.get("/health")).status_code == 200:
                    break
                await asyncio.sleep(0.1)
        nc = await nats.connect(url)
        try:
            got = await wait_for_events(
                nc.jetstream(),
                "llm.request.completed.v1.>",
                {"tags": ["spool-test"]},
                count=5,
                timeout=15,
            )
        finally:
            await nc.close()
        assert [ev["request_id"] for _, ev in got] == ids
    finally:
        stop_service(svc)
        server.terminate()
        server.wait(10)
