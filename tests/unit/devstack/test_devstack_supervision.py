"""The supervisor with fake processes: backoff, crash loops, ordered stop, status, guards."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tollgate_devstack import operate
from tollgate_devstack.datadir import DataDir, newer_data_message
from tollgate_devstack.restarts import (
    CRASH_LOOP_EXITS,
    STABLE_AFTER_S,
    RestartPolicy,
    backoff_delay,
)
from tollgate_devstack.supervision import Supervised, Supervisor
from tollgate_devstack.units import Console


class FakeUnit:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log
        self.running = False
        self.starts = 0

    def start(self) -> None:
        self.running = True
        self.starts += 1

    def alive(self) -> bool:
        return self.running

    def pid(self) -> int | None:
        return 1000 + self.starts if self.running else None

    def exit_code(self) -> int | None:
        return None if self.running else -9

    def stop(self, timeout: float) -> None:
        self.log.append(self.name)
        self.running = False

    def kill(self) -> None:
        self.running = False


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Lines(Console):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def line(self, text: str) -> None:
        self.lines.append(text)


def test_backoff_doubles_from_one_second_to_thirty() -> None:
    assert [backoff_delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert backoff_delay(1000) == 30
    # `up --restart-backoff 0.25`: the same doubling from a shorter first wait, same cap.
    assert [backoff_delay(n, 0.25) for n in range(1, 5)] == [0.25, 0.5, 1, 2]
    assert backoff_delay(1000, 0.25) == 30


def test_the_supervisor_gives_every_unit_its_first_restart_delay(tmp_path: Path) -> None:
    sup = Supervisor(Lines(), DataDir(tmp_path), Clock(), restart_backoff_s=0.1)
    entry = sup.add(Supervised(FakeUnit("ledger", []), "service", 4002))
    assert entry.policy.on_exit(1.0, 0.5) == 0.1
    assert entry.policy.on_exit(1.2, 0.1) == 0.2


def test_a_stable_run_resets_the_backoff() -> None:
    policy = RestartPolicy()
    assert policy.on_exit(0, 1) == 1
    assert policy.on_exit(2, 1) == 2
    assert policy.on_exit(100, STABLE_AFTER_S + 1) == 1


def test_crash_loop_after_five_exits_within_the_window() -> None:
    policy = RestartPolicy()
    for i in range(CRASH_LOOP_EXITS - 1):
        policy.on_exit(i, 0.5)
    assert not policy.crash_loop
    policy.on_exit(10, 0.5)
    assert policy.crash_loop
    assert policy.on_stable() is True
    assert not policy.crash_loop


def _supervisor(tmp_path: Path) -> tuple[Supervisor, Clock, Lines, list[str]]:
    clock, console, stopped = Clock(), Lines(), []
    sup = Supervisor(console, DataDir(tmp_path), clock)
    sup.add(Supervised(FakeUnit("nats", stopped), "server", 14222, stop_phase=3))
    sup.add(Supervised(FakeUnit("redis", stopped), "server", 16379, stop_phase=2))
    sup.add(Supervised(FakeUnit("ingress", stopped), "service", 4000, stop_phase=0))
    sup.add(Supervised(FakeUnit("ledger", stopped), "service", 4002, stop_phase=1))
    sup.add(Supervised(FakeUnit("admin", stopped), "service", 4001, stop_phase=1))
    return sup, clock, console, stopped


def test_a_dead_unit_is_restarted_after_its_backoff_and_the_others_are_untouched(
    tmp_path: Path,
) -> None:
    sup, clock, console, _ = _supervisor(tmp_path)
    ledger = sup.get("ledger").unit
    assert isinstance(ledger, FakeUnit)
    ledger.running = False
    clock.now = 5
    sup.tick()
    assert sup.get("ledger").state == "backoff"
    assert any("ledger exited (code -9) after 5.0 s; restarting in 1 s" in x for x in console.lines)
    clock.now = 5.5
    sup.tick()
    assert ledger.starts == 1
    clock.now = 6.0
    sup.tick()
    assert ledger.starts == 2
    assert sup.get("ledger").policy.restarts == 1
    others = [e.unit for e in sup.units if e.name != "ledger"]
    assert all(isinstance(u, FakeUnit) and u.starts == 1 and u.running for u in others)


def test_a_crash_loop_is_reported_loudly_and_retried_slowly(tmp_path: Path) -> None:
    sup, clock, console, _ = _supervisor(tmp_path)
    entry = sup.get("admin")
    unit = entry.unit
    assert isinstance(unit, FakeUnit)
    delays = []
    for _ in range(8):
        unit.running = False
        sup.tick()
        assert entry.next_start is not None
        delays.append(entry.next_start - clock.now)
        clock.now = entry.next_start
        sup.tick()
        assert unit.running
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]
    assert any(x.startswith("!!! CRASH LOOP: admin") for x in console.lines)
    sup.write_status()
    status = DataDir(tmp_path).read_status()
    assert status is not None
    admin = next(u for u in status["units"] if u["name"] == "admin")
    assert admin["crash_loop"] is True
    assert admin["restarts"] == 8
    clock.now += STABLE_AFTER_S
    sup.tick()
    assert not entry.policy.crash_loop
    assert any("admin is running again" in x for x in console.lines)


def test_stop_goes_ingress_then_consumers_then_servers(tmp_path: Path) -> None:
    sup, _, _, stopped = _supervisor(tmp_path)
    sup.shutdown("service")
    assert stopped[0] == "ingress"
    assert sorted(stopped[1:]) == ["admin", "ledger"]
    sup.shutdown()
    assert stopped[3:] == ["redis", "nats"]
    status = DataDir(tmp_path).read_status()
    assert status is not None
    assert status["phase"] == "stopped"


def test_status_file_names_every_unit_with_pid_port_uptime_restarts(tmp_path: Path) -> None:
    sup, clock, _, _ = _supervisor(tmp_path)
    clock.now = 12
    sup.write_status()
    status = DataDir(tmp_path).read_status()
    assert status is not None
    assert status["supervisor_pid"] == os.getpid()
    ingress = next(u for u in status["units"] if u["name"] == "ingress")
    assert ingress == ingress | {"kind": "service", "state": "running", "port": 4000}
    assert ingress["uptime_s"] == 12
    assert ingress["restarts"] == 0


def test_newer_data_folder_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    message = newer_data_message(tmp_path, "0.2.0", "0.1.0")
    assert message is not None
    assert "written by Tollgate 0.2.0, newer than this Tollgate 0.1.0" in message
    assert "Nothing was started" in message
    assert newer_data_message(tmp_path, "0.1.0", "0.1.0") is None
    assert newer_data_message(tmp_path, "0.0.9", "0.1.0") is None


def test_version_marker_and_pid_file_round_trip(tmp_path: Path) -> None:
    data = DataDir(tmp_path)
    assert data.written_by() is None
    data.mark("1.2.3")
    assert data.written_by() == "1.2.3"
    assert data.running_pid() is None
    data.claim()
    assert data.running_pid() == os.getpid()
    data.release()
    assert data.running_pid() is None
    data.pid_file.write_text("999999999\n")
    assert data.running_pid() is None  # a stale pid file does not block a start


@pytest.mark.parametrize(
    ("health", "depth"),
    [
        ({"dependencies": {"nats": {"status": "healthy", "spooled": 3}}}, 3),
        (
            {
                "dependencies": {
                    "nats": {"error": "ConnectionError: NATS unreachable; 12 events spooled"}
                }
            },
            12,
        ),
        ("not json", None),
    ],
)
def test_spool_depth_is_read_from_ingress_health(health: object, depth: int | None) -> None:
    assert operate.spool_depth(health) == depth


def test_render_shows_crash_loops_lag_and_spool() -> None:
    text = operate.render(
        {
            "supervisor_pid": 1,
            "phase": "running",
            "started_at": 0,
            "data_dir": "/d",
            "units": [
                {
                    "name": "ledger",
                    "kind": "service",
                    "state": "backoff",
                    "health": "ConnectError",
                    "pid": None,
                    "port": 4002,
                    "uptime_s": None,
                    "restarts": 6,
                    "crash_loop": True,
                    "next_restart_in_s": 30,
                }
            ],
            "consumer_lag": {"LLM/ledger-spend": 42},
            "spool_depth": 0,
        }
    )
    assert "CRASH LOOP" in text
    assert "retry in 30s" in text
    assert "LLM/ledger-spend" in text
    assert "42" in text
    assert "ingress spool depth: 0" in text
