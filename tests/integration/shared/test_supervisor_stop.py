"""The worker supervisor's stop, with real worker processes (tiny ASGI apps from
`support.supervised_apps`, grace 1 s, deadline 3 s past it):
- a worker whose shutdown hangs has its threads' stacks written to the log, is killed,
  and the supervisor exits 1 soon after the deadline instead of waiting forever;
- a SIGTERM that reaches the workers while they are still being spawned, or still
  building their app (before uvicorn listens for signals), stops them cleanly: exit 0,
  well before the deadline, instead of a signal lost and the workers killed at it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from support.supervised_apps import BUILDING
from tollgate_devstack.embedded import free_port

TESTS = Path(__file__).resolve().parents[2]

SUPERVISE = """
import sys
from support import supervised_apps
from tollgate_shared.runtime import Supervisor, setup_logging
from tollgate_shared.settings import ServiceSettings

setup_logging("INFO", "sup")

settings = ServiceSettings(port=int(sys.argv[1]), shutdown_grace_s=1)
create_app = getattr(supervised_apps, sys.argv[2])
sys.exit(Supervisor([settings, settings], create_app, "sup", 1, stop_extra_s=3).run())
"""
STARTED = "Application startup complete"


@contextmanager
def _supervisor(
    tmp_path: Path, factory: str
) -> Iterator[tuple[subprocess.Popen[bytes], Path, int]]:
    port = free_port()
    log_path = tmp_path / "supervisor.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-c", SUPERVISE, str(port), factory],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc, log_path, port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _wait_for(proc: subprocess.Popen[bytes], log_path: Path, text: str, count: int) -> None:
    deadline = time.monotonic() + 60
    while log_path.read_text().count(text) < count:
        assert proc.poll() is None, log_path.read_text()
        assert time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.02)


def _stop(proc: subprocess.Popen[bytes], log_path: Path) -> tuple[int, float]:
    stopped = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(30)
    return code, time.monotonic() - stopped


def test_a_worker_that_hangs_on_stop_has_its_stacks_logged_and_is_killed(tmp_path: Path) -> None:
    with _supervisor(tmp_path, "create_hanging_app") as (proc, log_path, port):
        _wait_for(proc, log_path, STARTED, 2)
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 204
        code, took = _stop(proc, log_path)
    log = log_path.read_text()
    assert code == 1, log
    # The deadline is grace (1 s) + 3 s; then half a second for each worker's stacks.
    assert took < 10, log
    assert log.count("did not stop in time: its stacks follow") == 2, log
    # faulthandler's dump of each worker, through the frame it hangs in.
    assert log.count("in _hang_in_shutdown") == 2, log
    assert log.count("(most recent call first)") >= 2, log


def test_a_sigterm_while_the_workers_build_their_app_stops_them_cleanly(tmp_path: Path) -> None:
    with _supervisor(tmp_path, "create_slow_app") as (proc, log_path, _port):
        _wait_for(proc, log_path, BUILDING, 2)
        code, took = _stop(proc, log_path)
    log = log_path.read_text()
    assert code == 0, log
    assert took < 10, log
    assert "did not stop in time" not in log
    # Each started (its 2 s build done), served nothing new and ran its shutdown.
    assert log.count("Application shutdown complete") == 2, log


def test_a_sigterm_while_the_workers_are_being_spawned_stops_them_cleanly(tmp_path: Path) -> None:
    with _supervisor(tmp_path, "create_slow_app") as (proc, log_path, _port):
        # Logged once the supervisor handles signals, just before it spawns the workers,
        # which then still have their interpreter to start and modules to import.
        _wait_for(proc, log_path, "2 workers on", 1)
        code, took = _stop(proc, log_path)
    log = log_path.read_text()
    assert code == 0, log
    assert took < 10, log
    assert "did not stop in time" not in log
