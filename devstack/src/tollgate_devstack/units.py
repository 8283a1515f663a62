"""The things the supervisor starts and watches: plain processes, and PostgreSQL via pgserver.

A plain process runs in its own session (Ctrl-C in the terminal reaches only the
supervisor, which then stops everything in order); its output goes to a rotating
log file and, in the foreground, to the console prefixed with its name.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

LOG_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 5


class Console:
    """Where the supervisor's own lines go: stderr in the foreground, a rotating file detached."""

    def __init__(self, log_path: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._file: logging.Logger | None = None
        if log_path is not None:
            self._file = rotating_logger("supervisor", log_path)

    @property
    def detached(self) -> bool:
        return self._file is not None

    def line(self, text: str) -> None:
        if self._file is not None:
            self._file.info("%s %s", time.strftime("%Y-%m-%dT%H:%M:%S"), text)
            return
        with self._lock:
            print(text, file=sys.stderr, flush=True)

    def say(self, msg: str) -> None:
        self.line(f"==> {msg}")


def rotating_logger(name: str, path: Path) -> logging.Logger:
    """A logger writing bare lines to `path`, rotated at 10 MB, five old files kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger(f"tollgate_devstack.output.{name}.{path}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    if not logger.handlers:
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    return logger


class Unit(Protocol):
    name: str

    def start(self) -> None: ...

    def alive(self) -> bool: ...

    def pid(self) -> int | None: ...

    def exit_code(self) -> int | None: ...

    def stop(self, timeout: float) -> None: ...

    def kill(self) -> None: ...


class ProcessUnit:
    """`argv` as a child process, restartable with the same command and environment."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        log_path: Path | None = None,
        console: Console | None = None,
        prefix_width: int = 8,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.console = console
        self.prefix = f"{name:<{prefix_width}} | "
        self._log = rotating_logger(name, log_path) if log_path else None
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        piped = self._log is not None or self.console is not None
        self._proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if piped else subprocess.DEVNULL,
            stderr=subprocess.STDOUT if piped else subprocess.DEVNULL,
            start_new_session=True,
        )
        if piped:
            threading.Thread(
                target=self._pump, args=(self._proc,), name=f"out-{self.name}", daemon=True
            ).start()

    def _pump(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            if self._log is not None:
                self._log.info("%s", line)
            if self.console is not None and not self.console.detached:
                self.console.line(self.prefix + line)

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def exit_code(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def signal(self, signum: int) -> None:
        if self.alive():
            assert self._proc is not None
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signum)

    def wait(self, timeout: float) -> bool:
        if self._proc is None:
            return True
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def stop(self, timeout: float) -> None:
        self.signal(signal.SIGTERM)
        if not self.wait(timeout):
            self.kill()

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()


def open_pgserver(pgdata: Path) -> Any:
    """pgserver's handle: initialises the cluster on first use and starts the postmaster."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (headless machines).
        warnings.simplefilter("ignore")
        import pgserver  # type: ignore[import-untyped]

        return pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]


class PostgresUnit:
    """PostgreSQL from the pgserver wheel, on a unix socket in its data folder.

    pg_ctl detaches the postmaster, so it is watched by pid rather than waited on;
    a restart is pg_ctl start on the same folder (same socket, same URL).
    """

    name = "postgres"

    def __init__(self, pgdata: Path, opener: Callable[[Path], Any] = open_pgserver) -> None:
        self.pgdata = pgdata
        self._opener = opener
        self._server: Any = None
        self._pid: int | None = None

    @property
    def url(self) -> str:
        return str(self._server.get_uri())

    def start(self) -> None:
        if self._server is None:
            self._server = self._opener(self.pgdata)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._server.ensure_postgres_running()
        self._pid = self._server.get_pid()

    def pid(self) -> int | None:
        return self._pid

    def alive(self) -> bool:
        if self._pid is None:
            return False
        try:
            os.kill(self._pid, 0)
        except ProcessLookupError:
            return False
        # A postmaster that died leaves a zombie only if it was our child; pg_ctl's is not.
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{self._pid}/stat").read_text()
            if stat.rsplit(")", 1)[-1].split()[0] == "Z":
                return False
        return True

    def exit_code(self) -> int | None:
        return None

    def stop(self, timeout: float) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._server.cleanup()
        self._server = None

    def kill(self) -> None:
        if self._pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
