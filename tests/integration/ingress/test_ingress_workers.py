"""TOLLGATE_INGRESS_WORKERS=2: two ingress processes on one port under a supervisor, as real
processes against real NATS, Redis and an OpenAI-compatible upstream. Both answer, every
call's event arrives, `/metrics` sums both whichever answers, each worker spools to its own
file (and the first takes over files no worker owns), a killed worker is replaced, SIGTERM
drains and stops them all, and a worker that cannot start stops the supervisor (exit 3)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from nats.js import JetStreamContext
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from support.builders import completed
from support.configs import MASTER_KEY, write_config
from support.events import wait_for_events
from support.fake_upstream import FakeUpstream, fake_upstream
from support.processes import Service, start_service, stop_service
from tollgate_devstack.embedded import StackUrls, free_port
from tollgate_shared.spool import Spool

COMPLETED = "llm.request.completed.v1.>"
TOTAL = "litellm_proxy_total_requests_metric_total"
# Seeded before start: spools of a worker index and of a single process no longer running.
STRANDED = ("spool-w3.sqlite3", "spool.sqlite3")
STRANDED_TAG = f"stranded-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with fake_upstream() as up:
        yield up


def _env(provisioned: StackUrls, upstream: FakeUpstream, tmp: Path) -> dict[str, str]:
    cfg = write_config(tmp / "config.yaml", upstream.base_url)
    (tmp / "metrics").mkdir(exist_ok=True)
    return {
        **provisioned.env(),
        "TOLLGATE_CONFIG": str(cfg),
        "TOLLGATE_SPOOL_PATH": str(tmp / "spool.sqlite3"),
        "TOLLGATE_INGRESS_WORKERS": "2",
        # Given, so the test can read each worker's own files.
        "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"),
    }


def _seed(path: Path, request_id: str) -> None:
    event = completed(request_id=request_id, tags=[STRANDED_TAG])
    spool = Spool(path)
    spool.append([(event.subject(), event.event_id, event.to_json(), event.event_type)])
    spool.close()


@pytest.fixture(scope="module")
def ingress(
    provisioned: StackUrls, upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("workers")
    for name in STRANDED:
        _seed(tmp / name, f"{STRANDED_TAG}-{name}")
    svc = start_service("tollgate_ingress", free_port(), _env(provisioned, upstream, tmp), tmp)
    yield svc
    stop_service(svc)


@pytest.fixture(autouse=True)
def healthy_upstream(upstream: FakeUpstream) -> None:
    upstream.latency_s = 0.0
    upstream.fail_status = None


def _fresh() -> httpx.AsyncClient:
    """A client that opens a new connection per request, so the kernel picks a worker each
    time (SO_REUSEPORT hashes the connection)."""
    return httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_keepalive_connections=0))


async def _workers(url: str, want: int = 2, tries: int = 200) -> dict[int, int]:
    """pid -> worker index, from /health, until `want` workers have answered."""
    seen: dict[int, int] = {}
    async with _fresh() as http:
        for _ in range(tries):
            r = await http.get(f"{url}/health")
            if r.status_code == 200:
                worker = r.json()["worker"]
                assert worker["workers"] == 2
                seen[worker["pid"]] = worker["index"]
                if len(seen) >= want:
                    break
            await asyncio.sleep(0.02)
    return seen


def _total(text: str, user_agent: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == TOTAL and s.labels.get("user_agent") == user_agent
    )


def _children(pid: int) -> set[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], check=False, capture_output=True, text=True
    )
    return {int(x) for x in out.stdout.split()}


async def test_both_workers_answer_on_one_port(ingress: Service) -> None:
    seen = await _workers(ingress.url)
    assert sorted(seen.values()) == [0, 1]
    # Worker processes of the supervisor (`python -m tollgate_ingress`), not other replicas.
    assert set(seen) <= _children(ingress.proc.pid)


async def test_every_call_is_served_published_and_counted_once_in_every_scrape(
    ingress: Service, js: JetStreamContext
) -> None:
    calls, agent = 40, f"workers-test/{uuid.uuid4().hex[:8]}"
    headers = {"authorization": f"Bearer {MASTER_KEY}", "user-agent": agent}
    async with _fresh() as http:
        for i in range(calls):
            r = await http.post(
                f"{ingress.url}/v1/chat/completions",
                headers=headers,
                json={
                    "model": "fake",
                    "messages": [{"role": "user", "content": f"call {i}"}],
                    "metadata": {"tags": [agent]},
                },
            )
            assert r.status_code == 200
    got = await wait_for_events(js, COMPLETED, {"tags": [agent]}, count=calls, timeout=20)
    assert len(got) == calls
    assert len({ev["request_id"] for _, ev in got}) == calls

    # Metrics are recorded after the response: wait for the last, then every scrape, by
    # whichever worker answers it, has the sum of both.
    answered: set[int] = set()
    async with _fresh() as http:
        deadline = time.monotonic() + 10
        while _total((await http.get(f"{ingress.url}/metrics")).text, agent) < calls:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        for _ in range(12):
            assert _total((await http.get(f"{ingress.url}/metrics")).text, agent) == calls
            answered.add((await http.get(f"{ingress.url}/health")).json()["worker"]["pid"])
    # Both workers served some of the calls (each one's own counts, from its own file).
    directory = ingress.log_path.parent / "metrics"
    per_worker = {f.name: _total_of_file(f, agent) for f in directory.glob("counter_*.db")}
    assert sum(per_worker.values()) == calls
    assert sum(1 for n in per_worker.values() if n > 0) == 2, per_worker
    assert len(answered) == 2


def _proc_stats(pid: int) -> tuple[float, float]:
    """(CPU seconds, resident bytes) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    return cpu, rss


async def test_process_metrics_cover_every_worker(ingress: Service) -> None:
    """process_* are not per scrape-answering worker: memory and descriptors are the live
    workers' sums, CPU seconds the total of every worker (a counter), start time the
    earliest; each worker copies its own every second."""
    seen = await _workers(ingress.url)
    await asyncio.sleep(1.5)  # a fresh copy from each worker
    async with _fresh() as http:
        text = (await http.get(f"{ingress.url}/metrics")).text
    got = {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        if family.name.startswith("process_")
        for s in family.samples
    }
    stats = [_proc_stats(pid) for pid in seen]
    rss = sum(r for _, r in stats)
    assert 0.7 * rss < got["process_resident_memory_bytes"] < 1.3 * rss, (got, stats)
    # Copied up to a second ago, and a replaced worker's seconds still count.
    assert got["process_cpu_seconds_total"] >= 0.5 * sum(c for c, _ in stats), (got, stats)
    assert got["process_open_fds"] >= 2 * 5
    assert got["process_start_time_seconds"] > 1.7e9
    assert got["process_max_fds"] > 0


def _total_of_file(path: Path, user_agent: str) -> float:
    return sum(
        s.value
        for metric in MultiProcessCollector.merge([str(path)])  # type: ignore[no-untyped-call]
        for s in metric.samples
        if s.name == TOTAL and s.labels.get("user_agent") == user_agent
    )


async def test_one_spool_file_per_worker_and_stranded_ones_are_replayed(
    ingress: Service, js: JetStreamContext
) -> None:
    tmp = ingress.log_path.parent
    assert (tmp / "spool-w0.sqlite3").exists()
    assert (tmp / "spool-w1.sqlite3").exists()
    for name in STRANDED:
        assert not (tmp / name).exists(), name
    got = await wait_for_events(js, COMPLETED, {"tags": [STRANDED_TAG]}, count=2, timeout=15)
    assert sorted(ev["request_id"] for _, ev in got) == sorted(
        f"{STRANDED_TAG}-{name}" for name in STRANDED
    )


async def test_a_killed_worker_is_replaced_and_its_counts_stay(ingress: Service) -> None:
    seen = await _workers(ingress.url)
    victim = next(pid for pid, index in seen.items() if index == 1)
    async with _fresh() as http:
        before = (await http.get(f"{ingress.url}/metrics")).text
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        now = await _workers(ingress.url, tries=20)
        replaced = [pid for pid, index in now.items() if index == 1 and pid != victim]
        if replaced:
            break
        assert time.monotonic() < deadline, ingress.logs()[-3000:]
        await asyncio.sleep(0.5)
    assert ingress.proc.poll() is None  # the supervisor carries on
    assert "exited with -9: restarting" in ingress.logs()
    async with _fresh() as http:
        after = (await http.get(f"{ingress.url}/metrics")).text
        r = await http.post(
            f"{ingress.url}/v1/chat/completions",
            headers={"authorization": f"Bearer {MASTER_KEY}"},
            json={"model": "fake", "messages": [{"role": "user", "content": "again"}]},
        )
    assert r.status_code == 200
    # A dead worker's counters stay in the sums: totals never go down.
    assert _all_calls(after) >= _all_calls(before) > 0


def _all_calls(text: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == TOTAL
    )


async def test_sigterm_drains_the_call_in_flight_and_stops_every_worker(
    provisioned: StackUrls, upstream: FakeUpstream, tmp_path: Path
) -> None:
    svc = start_service(
        "tollgate_ingress", free_port(), _env(provisioned, upstream, tmp_path), tmp_path
    )
    try:
        workers = await _workers(svc.url)
        upstream.latency_s = 1.5
        async with httpx.AsyncClient(timeout=30) as http:
            call = asyncio.create_task(
                http.post(
                    f"{svc.url}/v1/chat/completions",
                    headers={"authorization": f"Bearer {MASTER_KEY}"},
                    json={"model": "fake", "messages": [{"role": "user", "content": "slow"}]},
                )
            )
            await asyncio.sleep(0.5)  # in flight in one worker
            svc.proc.send_signal(signal.SIGTERM)
            r = await call
        assert r.status_code == 200
        assert await asyncio.to_thread(svc.proc.wait, 40) == 0, svc.logs()[-4000:]
        for pid in workers:
            assert not Path(f"/proc/{pid}").exists(), pid
        assert not any((tmp_path / "metrics").glob("gauge_live*"))  # every worker marked dead
    finally:
        stop_service(svc)


def test_a_worker_that_cannot_start_stops_the_supervisor(
    provisioned: StackUrls, upstream: FakeUpstream, tmp_path: Path
) -> None:
    held = Spool(tmp_path / "spool-w1.sqlite3")  # another process holds worker 1's spool
    port = free_port()
    env = {
        **os.environ,
        **_env(provisioned, upstream, tmp_path),
        "TOLLGATE_PORT": str(port),
        "TOLLGATE_HOST": "127.0.0.1",
    }
    log = tmp_path / "ingress.log"
    try:
        with log.open("wb") as out:
            proc = subprocess.run(
                [sys.executable, "-m", "tollgate_ingress"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=90,
                check=False,
            )
    finally:
        held.close()
    text = log.read_text(errors="replace")
    assert proc.returncode == 3, text[-3000:]
    assert "held by another process" in text
    assert "worker 1 failed to start" in text
