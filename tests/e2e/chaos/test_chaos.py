"""The fault suite: steady load through a scaled-out stack (three-node JetStream cluster,
two replicas of every service behind the round-robin front) while one fault is injected,
then `reconcile`: every call the client was answered for has exactly one spend row, and
the key/team/user totals, the response-header costs and the spend counter agree to the cent.

Short form (in `./just test`): one replica of each service killed at once, the stream
leader's NATS node killed, Redis restarted, PostgreSQL and the whole NATS cluster frozen
for 10 s. Full form (`./just chaos`, TOLLGATE_CHAOS_FULL=1): each service on its own, a
cluster node killed and brought back, NATS frozen 30 s and 5 min, PostgreSQL 3 min.
Each row prints served / logged / lost / duplicated; the table closes the run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tollgate_devstack import reconcile
from tollgate_devstack.loadrun import (
    LoadRun,
    Stack,
    acquire_shared_stack,
    release_shared_stack,
)

FULL = os.environ.get("TOLLGATE_CHAOS_FULL") == "1"
SERVICES = ("ingress", "ledger", "exporter", "alerter", "admin")
TABLE: list[tuple[str, reconcile.Report]] = []


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    yield acquire_shared_stack()
    release_shared_stack()
    if TABLE:
        print("\nchaos table\n" + reconcile.tally(TABLE))


def _run_fault(
    stack: Stack,
    tmp_path: Path,
    name: str,
    inject: Callable[[LoadRun], None],
    before_s: float = 1.5,
    after_s: float = 1.5,
) -> reconcile.Report:
    record = tmp_path / "run.jsonl"
    load = LoadRun(stack.url, record, stack.ingress_urls()).start()
    try:
        time.sleep(before_s)
        inject(load)
        time.sleep(after_s)
    finally:
        load.stop()
    report = reconcile.collect(record, stack.database_url, wait_s=240)
    TABLE.append((name, report))
    print(f"\n--- {name}\n{report.render()}")
    return report


def _assert_exact(report: reconcile.Report) -> None:
    assert report.served > 0, report.render()
    assert (report.lost, report.duplicated) == (0, 0), report.render()
    assert report.ok, report.render()


def _kill_and_wait(stack: Stack, load: LoadRun, names: list[str]) -> None:
    pids = {}
    for n in names:
        pids[n] = stack.kill(n)
        load.fault(f"kill -9 {n}", resets_counter=n.startswith("ingress"))
    for n in names:
        stack.wait_back(n, pids[n], within_s=120)


KILL_GROUPS = [[f"{s}-1"] for s in SERVICES] if FULL else [[f"{s}-1" for s in SERVICES]]


@pytest.mark.parametrize("victims", KILL_GROUPS, ids="+".join)
def test_kill_9_a_replica_loses_and_doubles_nothing(
    stack: Stack, tmp_path: Path, victims: list[str]
) -> None:
    report = _run_fault(
        stack,
        tmp_path,
        f"kill -9 {', '.join(victims)}",
        lambda load: _kill_and_wait(stack, load, victims),
    )
    _assert_exact(report)


def test_nats_nodes_killed_node_then_stream_leader(stack: Stack, tmp_path: Path) -> None:
    def inject(load: LoadRun) -> None:
        if FULL:
            pid = stack.kill("nats-n2")
            load.fault("kill -9 nats-n2")
            stack.wait_back("nats-n2", pid)
            time.sleep(3)
        leader = stack.nats_leader("LLM") or "nats-n1"
        pid = stack.kill(leader)
        load.fault(f"kill -9 {leader} (LLM stream leader)")
        stack.wait_back(leader, pid)
        time.sleep(3)

    _assert_exact(_run_fault(stack, tmp_path, "NATS node(s) killed (stream leader)", inject))


def test_redis_restarted(stack: Stack, tmp_path: Path) -> None:
    def inject(load: LoadRun) -> None:
        pid = stack.kill("redis")
        load.fault("kill -9 redis (restarted by the supervisor)")
        stack.wait_back("redis", pid)
        time.sleep(2)

    _assert_exact(_run_fault(stack, tmp_path, "Redis restarted", inject))


POSTGRES_S = 180.0 if FULL else 10.0
NATS_FREEZES = (30.0, 300.0) if FULL else (10.0,)


def test_postgres_down(stack: Stack, tmp_path: Path) -> None:
    def inject(load: LoadRun) -> None:
        load.fault(f"PostgreSQL frozen {POSTGRES_S:.0f} s")
        with stack.frozen(["postgres"]):
            time.sleep(POSTGRES_S)

    _assert_exact(_run_fault(stack, tmp_path, f"PostgreSQL down {POSTGRES_S:.0f} s", inject))


@pytest.mark.parametrize("seconds", NATS_FREEZES, ids=lambda s: f"{s:.0f}s")
def test_whole_nats_cluster_down(stack: Stack, tmp_path: Path, seconds: float) -> None:
    def inject(load: LoadRun) -> None:
        load.fault(f"NATS cluster frozen {seconds:.0f} s")
        with stack.frozen(stack.names("nats")):
            time.sleep(seconds)

    _assert_exact(_run_fault(stack, tmp_path, f"NATS down {seconds:.0f} s", inject))
