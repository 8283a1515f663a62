"""Runs Tollgate services as real processes for e2e tests, and waits for /health."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass
class Service:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_service(
    module: str, port: int, env: Mapping[str, str], log_dir: Path, ready_timeout: float = 60
) -> Service:
    """Start `python -m <module>` on `port` and wait until GET /health answers 200."""
    return wait_healthy([launch_service(module, port, env, log_dir)], ready_timeout)[0]


def launch_service(module: str, port: int, env: Mapping[str, str], log_dir: Path) -> Service:
    """Start `python -m <module>` on `port` without waiting for it (see `wait_healthy`)."""
    log_path = log_dir / f"{module}-{port}.log"
    full_env = {**os.environ, **env, "TOLLGATE_PORT": str(port), "TOLLGATE_HOST": "127.0.0.1"}
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", module],
            env=full_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    return Service(module, port, proc, log_path)


def wait_healthy(services: list[Service], ready_timeout: float = 60) -> list[Service]:
    """Wait until every service's GET /health answers 200 (they start side by side); one
    that exits or is not healthy in time stops them all and raises with its log."""
    deadline = time.monotonic() + ready_timeout
    waiting = list(services)
    while waiting:
        for svc in list(waiting):
            if svc.proc.poll() is not None:
                problem = f"{svc.name} exited ({svc.proc.returncode})"
                break
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{svc.url}/health", timeout=1).status_code == 200:
                    waiting.remove(svc)
        else:
            if not waiting:
                return services
            if time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            svc = waiting[0]
            problem = f"{svc.name} not healthy within {ready_timeout}s"
        for other in services:
            stop_service(other)
        raise RuntimeError(f"{problem}:\n{svc.logs()[-4000:]}")
    return services


def stop_service(svc: Service, timeout: float = 15) -> None:
    if svc.proc.poll() is None:
        svc.proc.send_signal(signal.SIGINT)
        try:
            svc.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            svc.proc.kill()
            svc.proc.wait()


@contextlib.contextmanager
def running(services: list[Service]) -> Iterator[list[Service]]:
    try:
        yield services
    finally:
        for s in reversed(services):
            stop_service(s)
