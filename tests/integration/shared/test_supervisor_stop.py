"""The worker supervisor's stop deadline, with real worker processes: a worker whose
shutdown hangs has its threads' stacks written to the log, is killed, and the supervisor
exits 1 soon after the deadline instead of waiting on it forever."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tollgate_devstack.embedded import free_port

TESTS = Path(__file__).resolve().parents[2]

SUPERVISE = """
import sys
from support.hanging_app import create_app
from tollgate_shared.runtime import Supervisor
from tollgate_shared.settings import ServiceSettings

settings = ServiceSettings(port=int(sys.argv[1]), shutdown_grace_s=1)
sys.exit(Supervisor([settings, settings], create_app, "hang", 1, stop_extra_s=1).run())
"""


def test_a_worker_that_hangs_on_stop_has_its_stacks_logged_and_is_killed(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "supervisor.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-c", SUPERVISE, str(port)],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while log_path.read_text().count("Application startup complete") < 2:
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 204
        stopped = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 1, log_path.read_text()
        # The deadline is grace (1 s) + 1 s; then half a second for the stacks, then the kill.
        assert time.monotonic() - stopped < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = log_path.read_text()
    assert log.count("did not stop in time: its stacks follow") == 2, log
    # faulthandler's dump of each worker, through the frame it hangs in.
    assert log.count("in _hang_in_shutdown") == 2, log
    assert log.count("(most recent call first)") >= 2
