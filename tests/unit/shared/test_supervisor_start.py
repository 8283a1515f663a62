"""The worker supervisor's start racing its stop (a unit test: the process class and
`os.kill` are stand-ins). A SIGTERM handled while a worker's process is being started,
before the supervisor has recorded it, must still reach that worker; the workers not
started yet are not started at all."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from tollgate_shared import runtime
from tollgate_shared.settings import ServiceSettings


class _Process:
    def __init__(self, supervisor: runtime.Supervisor, pid: int, **_: Any) -> None:
        self.supervisor = supervisor
        self.pid: int | None = None
        self.next_pid = pid

    def start(self) -> None:
        self.pid = self.next_pid
        # The SIGTERM arrives here: the process exists, the supervisor does not know it yet.
        self.supervisor._stop()


def test_a_stop_during_a_workers_start_reaches_that_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = ServiceSettings(port=4000)
    supervisor = runtime.Supervisor([settings, settings], lambda s, c: None, "svc", 1)
    pids = iter((1001, 1002))
    started: list[_Process] = []

    class Context:
        def Process(self, **kwargs: Any) -> _Process:  # noqa: N802 (multiprocessing's name)
            proc = _Process(supervisor, next(pids), **kwargs)
            started.append(proc)
            return proc

    killed: list[tuple[int, int]] = []
    monkeypatch.setattr(supervisor, "_context", Context())
    monkeypatch.setattr(runtime.os, "kill", lambda pid, sig: killed.append((pid, sig)))
    supervisor._start(0)
    supervisor._start(1)
    assert [p.pid for p in started] == [1001]  # the second is never started
    assert killed == [(1001, signal.SIGTERM)]
