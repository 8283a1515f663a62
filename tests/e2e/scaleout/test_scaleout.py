"""Scale-out, run here: `up --cluster --replicas 2` (three-node JetStream cluster, streams
and KV at R3, two replicas of every service, ingress behind the round-robin front).

- ledger replicas split the durable consumer: both write spend rows, none missing or
  doubled, totals exact (reconcile);
- ingress replicas enforce one rate limit and one budget together;
- admin replicas both serve writes, and the key bucket ends equal to PostgreSQL after
  concurrent updates of one key on both;
- per-replica ledger throughput is printed.

The stack is shared with the fault suite (tests/e2e/chaos) when both run in one session.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import nats
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tollgate_devstack import reconcile
from tollgate_devstack.loadrun import (
    MASTER,
    LoadRun,
    Stack,
    acquire_shared_stack,
    create_run_entities,
    release_shared_stack,
    wait_key_works,
)
from tollgate_shared import names
from tollgate_shared.state import hash_key

AUTH = {"Authorization": f"Bearer {MASTER}"}
CHAT = {"model": "demo", "messages": [{"role": "user", "content": "Hello"}]}


@pytest.fixture(scope="session")
def scaled() -> Iterator[Stack]:
    yield acquire_shared_stack()
    release_shared_stack()


def _ledger_rows(stack: Stack) -> dict[str, float]:
    """`tollgate_ledger_rows_written_total{table="spend_logs"}` per ledger replica."""
    out: dict[str, float] = {}
    for name in stack.names("ledger"):
        text = httpx.get(f"http://127.0.0.1:{stack.unit(name)['port']}/metrics", timeout=5).text
        out[name] = sum(
            s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "tollgate_ledger_rows_written_total"
            and s.labels.get("table") == "spend_logs"
        )
    return out


def test_ledger_replicas_split_the_durable_and_count_exactly(scaled: Stack, tmp_path: Path) -> None:
    before = _ledger_rows(scaled)
    record = tmp_path / "run.jsonl"
    load = LoadRun(scaled.url, record, scaled.ingress_urls(), threads=4).start()
    started = time.monotonic()
    time.sleep(8)
    load.stop()
    report = reconcile.collect(record, scaled.database_url, wait_s=120)
    elapsed = time.monotonic() - started
    after = _ledger_rows(scaled)
    per_replica = {n: after[n] - before.get(n, 0) for n in after}
    print(f"\n{report.render()}\nspend rows per ledger replica: {per_replica}")
    print(
        "rows/s per replica over the run: "
        + ", ".join(f"{n} {v / elapsed:.0f}" for n, v in per_replica.items())
    )
    assert report.ok, report.render()
    assert (report.lost, report.duplicated) == (0, 0)
    # Both replicas took part in the shared durable (pull consumers split the messages).
    assert all(v > 0 for v in per_replica.values()), per_replica


def _post(url: str, key: str) -> int:
    with httpx.Client(timeout=15) as c:  # a new connection: the front alternates replicas
        return c.post(
            f"{url}/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"}
        ).status_code


def test_ingress_replicas_enforce_one_rate_limit(scaled: Stack) -> None:
    key, _, _ = create_run_entities(scaled.url, f"rpm{int(time.time())}", rpm_limit=5)
    wait_key_works(scaled.url, key)
    codes = [_post(scaled.url, key) for _ in range(16)]
    assert codes.count(200) == 5, codes
    assert codes.count(429) == 11, codes


def test_ingress_replicas_enforce_one_budget(scaled: Stack, tmp_path: Path) -> None:
    # One demo call costs 0.000026: the budget fits one, 20 parallel calls across replicas.
    key, _, _ = create_run_entities(scaled.url, f"bud{int(time.time())}", max_budget=0.00004)
    wait_key_works(scaled.url, key)
    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(lambda _: _post(scaled.url, key), range(20)))
    served = codes.count(200)
    print(f"\nbudget fits one call; 20 parallel calls over 2 replicas: {served} served, {codes}")
    assert served == 1, codes


async def _kv_metadata(nats_url: str, password: str, key_hash: str) -> object:
    nc = await nats.connect(nats_url.split(","), user="ingress", password=password)
    try:
        kv = await nc.jetstream().key_value(names.KV_KEYS)
        entry = await kv.get(key_hash)
        assert entry.value is not None
        return json.loads(entry.value).get("metadata")
    finally:
        await nc.close()


def test_admin_replicas_serve_writes_without_lost_updates(scaled: Stack) -> None:
    admins = [f"http://127.0.0.1:{scaled.unit(n)['port']}" for n in scaled.names("admin")]
    assert len(admins) == 2
    made = httpx.post(f"{admins[1]}/key/generate", json={}, headers=AUTH, timeout=30)
    assert made.status_code == 200, made.text
    key = made.json()["key"]
    wait_key_works(scaled.url, key)  # written by admin-2, honoured by ingress replicas

    errors: list[str] = []

    def writer(admin: str, start: int) -> None:
        with httpx.Client(timeout=30, headers=AUTH) as c:
            for i in range(start, 40, 2):
                resp = c.post(f"{admin}/key/update", json={"key": key, "metadata": {"n": i}})
                if resp.status_code != 200:
                    errors.append(resp.text)

    threads = [threading.Thread(target=writer, args=(a, n)) for n, a in enumerate(admins)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    stored = httpx.get(
        f"{admins[0]}/key/info", params={"key": key}, headers=AUTH, timeout=10
    ).json()
    info = stored.get("info", stored)
    truth = info.get("metadata")
    passwords = json.loads((scaled.data_dir / "nats" / "users.json").read_text())
    nats_url = scaled.status["servers"]["TOLLGATE_NATS_URL"]
    deadline = time.monotonic() + 15
    seen = asyncio.run(_kv_metadata(nats_url, passwords["ingress"], hash_key(key)))
    while seen != truth and time.monotonic() < deadline:
        time.sleep(0.5)
        seen = asyncio.run(_kv_metadata(nats_url, passwords["ingress"], hash_key(key)))
    assert seen == truth, (seen, truth)
    assert isinstance(truth, dict)
    assert truth.get("n") in (38, 39)
