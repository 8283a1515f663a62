"""Child processes of a bench run: start (pinned to CPUs or not), wait, measure, stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    url: str = ""  # where it answers HTTP, when it does

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def pin(pid: int, cpus: set[int] | None) -> None:
    """Restrict a process (0: the calling thread) to `cpus`; None leaves it free."""
    if cpus:
        os.sched_setaffinity(pid, cpus)


def repin(pid: int, cpus: set[int]) -> None:
    """Move every thread of a running process to `cpus` (`taskset -a -p`): a thread
    keeps the affinity it was started with, whatever its process's main thread gets."""
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(tid), cpus)


def start_process(
    name: str,
    cmd: list[str],
    work: Path,
    env: Mapping[str, str],
    cpus: set[int] | None,
) -> Proc:
    log_path = work / f"{name}.log"
    with log_path.open("ab") as log_file:
        popen = subprocess.Popen(
            cmd,
            env={**os.environ, **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    # Before the child has started any thread of its own, so they all inherit it.
    with contextlib.suppress(ProcessLookupError):
        pin(popen.pid, cpus)
    return Proc(name, popen, log_path)


def wait_http(
    proc: Proc, url: str, timeout: float, headers: Mapping[str, str] | None = None
) -> None:
    """Wait until GET `url` answers 200; fail with the process's log if it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1, headers=dict(headers or {})).status_code == 200:
                return
        time.sleep(0.1)
    stop_process(proc)
    raise RuntimeError(f"{proc.name} not ready at {url} within {timeout}s:\n{proc.tail()}")


def stop_process(proc: Proc, timeout: float = 15) -> None:
    if proc.popen.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.popen.send_signal(signal.SIGTERM)
    try:
        proc.popen.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.popen.kill()
        proc.popen.wait()


def rss_mb(pid: int) -> tuple[float | None, float | None]:
    """(current, peak) resident set size in MiB, from /proc (None where unavailable)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None, None
    values: dict[str, float] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values.get("VmRSS"), values.get("VmHWM")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used so far, from /proc/<pid>/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
