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
    log_path = log_dir / f"{module}-{port}.log"
    full_env = {**os.environ, **env, "TOLLGATE_PORT": str(port), "TOLLGATE_HOST": "127.0.0.1"}
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", module],
            env=full_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    svc = Service(module, port, proc, log_path)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{module} exited ({proc.returncode}):\n{svc.logs()[-4000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{svc.url}/health", timeout=1).status_code == 200:
                return svc
        time.sleep(0.1)
    stop_service(svc)
    raise RuntimeError(f"{module} not healthy within {ready_timeout}s:\n{svc.logs()[-4000:]}")


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
