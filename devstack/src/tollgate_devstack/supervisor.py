"""Runs the whole system on one machine: servers, provisioning, migrations, five services."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import FrameType

import httpx

from tollgate_devstack import plan
from tollgate_devstack.datadir import DataDir, newer_data_message, tollgate_version
from tollgate_devstack.embedded import (
    PREFERRED_NATS_PORT,
    PREFERRED_REDIS_PORT,
    EmbeddedStack,
    StackUrls,
    cluster_block,
    cluster_nodes,
    free_port,
    nats_argv,
    nats_passwords,
    port_is_free,
    redis_argv,
    write_nats_config,
)
from tollgate_devstack.restarts import FIRST_DELAY_S
from tollgate_devstack.supervision import Supervised, Supervisor
from tollgate_devstack.units import Console, PostgresUnit, ProcessUnit, Unit
from tollgate_shared.provision import provision_url
from tollgate_shared.settings import NatsAuth

_SERVER_NAMES = {
    "TOLLGATE_NATS_URL": "NATS",
    "TOLLGATE_DATABASE_URL": "PostgreSQL",
    "TOLLGATE_REDIS_URL": "Redis",
}


class StartError(RuntimeError):
    """Something a person must fix before the system can start; the message says what."""


# Where `say` writes: stderr, or the rotating supervisor log of a detached stack.
_CONSOLE: list[Console] = [Console()]


def say(msg: str) -> None:
    _CONSOLE[0].say(msg)


def wait_for_port(port: int, unit: Unit, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not unit.alive():
            raise RuntimeError(f"{what} exited with code {unit.exit_code()} while starting")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout}s")


def find_repo_root(start: Path) -> Path | None:
    """The nearest folder at or above `start` holding the workspace's justfile."""
    for folder in (start, *start.parents):
        if (folder / "justfile").is_file() and (folder / "pyproject.toml").is_file():
            return folder
    return None


def default_data_dir(env: Mapping[str, str], cwd: Path) -> Path:
    if env.get("TOLLGATE_DATA_DIR"):
        return Path(env["TOLLGATE_DATA_DIR"]).expanduser().resolve()
    return (find_repo_root(cwd) or cwd) / ".data"


def identify(port: int) -> str | None:
    """Who answers HTTP on `port`: a Tollgate service names itself in /health."""
    try:
        resp = httpx.get(f"{plan.local_url(port)}/health", timeout=1.0)
    except httpx.HTTPError:
        return None
    with contextlib.suppress(ValueError, AttributeError):
        service = resp.json().get("service")
        if isinstance(service, str):
            return f"tollgate's {service} service"
    server = resp.headers.get("server")
    return f"an HTTP server ({server})" if server else "an HTTP server"


def check_ports(base_port: int, host: str, replicas: int = 1) -> None:
    conflicts = plan.port_conflicts(lambda p: port_is_free(p, host), base_port, identify, replicas)
    if conflicts:
        raise StartError(plan.conflict_message(conflicts, base_port, replicas))


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops us like Ctrl-C does, so `finally` blocks stop the servers.

    SIGINT is (re)installed too: a shell without job control starts background
    commands with SIGINT ignored, and Python then never raises KeyboardInterrupt.
    """

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous_term = signal.signal(signal.SIGTERM, interrupt)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)


def start_servers(stack: EmbeddedStack, env: Mapping[str, str]) -> StackUrls:
    """Embedded servers for every URL not given in the environment."""
    for var, name in _SERVER_NAMES.items():
        if env.get(var):
            say(f"using {name} at {env[var]} ({var})")
    try:
        urls = stack.start(
            nats_url=env.get("TOLLGATE_NATS_URL") or None,
            database_url=env.get("TOLLGATE_DATABASE_URL") or None,
            redis_url=env.get("TOLLGATE_REDIS_URL") or None,
        )
    except Exception as exc:  # pgserver and subprocess failures have no common type
        raise StartError(
            f"could not start the embedded servers: {exc} (logs under {stack.data_dir})"
        ) from exc
    return urls


def provision(
    nats_url: str, auth: NatsAuth | None = None, replicas: int = 1, within_s: float = 60.0
) -> None:
    """Streams, consumers and buckets at `replicas`; a cluster that is still electing its
    JetStream leader is given `within_s` to answer."""
    say(f"provisioning streams, durable consumers and buckets (R{replicas})")
    deadline = time.monotonic() + within_s
    while True:
        try:
            asyncio.run(provision_url(nats_url, replicas, auth=auth))
            return
        except Exception as exc:
            if replicas == 1 or time.monotonic() > deadline:
                raise StartError(f"provisioning NATS at {nats_url} failed: {exc}") from exc
            say(f"the JetStream cluster is not ready yet ({type(exc).__name__}); retrying")
            time.sleep(1.0)


def migrate(python: str, env: Mapping[str, str], cwd: Path, timeout: float = 300.0) -> None:
    for spec in plan.SERVICES:
        if not spec.migrates:
            continue
        say(f"applying {spec.name} migrations")
        cmd = plan.migrate_command(python, spec.name)
        try:
            done = subprocess.run(cmd, env=dict(env), cwd=cwd, check=False, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise StartError(
                f"`{' '.join(cmd[1:])}` did not finish within {timeout:.0f}s; "
                "no service was started"
            ) from exc
        if done.returncode != 0:
            raise StartError(
                f"`{' '.join(cmd[1:])}` failed with exit code {done.returncode} (output above); "
                "no service was started"
            )


def _health(port: int) -> tuple[bool, str]:
    try:
        resp = httpx.get(f"{plan.local_url(port)}/health", timeout=2.0)
    except httpx.HTTPError as exc:
        return False, f"{type(exc).__name__}"
    return resp.status_code == 200, f"{resp.status_code} {resp.text[:300]}"


class HealthWatch:
    """Polls every service's /health until all answer 200, then prints the banner."""

    def __init__(
        self,
        base_port: int,
        timeout: float,
        banner: str,
        on_ready: Callable[[], None] = lambda: None,
        replicas: int = 1,
    ) -> None:
        self.on_ready = on_ready
        self.base_port = base_port
        self.ports = {i.name: i.port for i in plan.instances(base_port, replicas)}
        self.timeout = timeout
        self.banner = banner
        self.healthy: set[str] = set()
        self.failure: str | None = None
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.done.set()
        self._thread.join(5)

    def _run(self) -> None:
        deadline: float | None = time.monotonic() + self.timeout
        last: dict[str, str] = {}
        announced = False
        while not self.done.is_set():
            for name, port in self.ports.items():
                if name not in self.healthy:
                    ok, detail = _health(port)
                    if ok:
                        self.healthy.add(name)
                        say(f"{name} is healthy on {plan.local_url(port)}")
                    last[name] = detail
            if len(self.healthy) == len(self.ports):
                if not announced:
                    _CONSOLE[0].line(self.banner)
                    self.on_ready()
                return
            if deadline is not None and time.monotonic() > deadline:
                # A service that will not come up is reported, not allowed to take the
                # others down: the supervisor keeps restarting it with backoff, and ingress
                # serves (its /health names what is down).
                deadline = None
                waiting = [n for n in self.ports if n not in self.healthy]
                self.failure = f"not healthy within {self.timeout:.0f}s: " + "; ".join(
                    f"{n} (/health: {last.get(n, 'no answer')})" for n in waiting
                )
                say(f"!!! {self.failure}; they keep being restarted (./just status, ./just logs)")
                if any(n.startswith("ingress") for n in self.healthy):
                    _CONSOLE[0].line(self.banner)
                    self.on_ready()
                    announced = True
            self.done.wait(0.5)


def start_nats_cluster(sup: Supervisor, data: DataDir, passwords: Mapping[str, str]) -> str:
    """Three nats-server processes with routes to each other (JetStream clustered), each
    supervised as `nats-n1`…`nats-n3` with its own store; the URLs of all three, comma-
    separated, so a client started while one node is down connects to another."""
    nodes = cluster_nodes(3)
    for node in nodes:
        d = data.root / "nats" / node.name
        conf = write_nats_config(
            d, node.port, node.monitor_port, passwords, cluster_block(node, nodes)
        )
        say(f"starting NATS cluster node {node.name} on 127.0.0.1:{node.port} (data in {d})")
        unit = ProcessUnit(f"nats-{node.name}", nats_argv(conf))
        sup.add(Supervised(unit, "server", node.port, stop_phase=3))
    for node in nodes:
        wait_for_port(node.port, sup.get(f"nats-{node.name}").unit, f"nats-server {node.name}")
    sup.info["nats_monitor_url"] = f"http://127.0.0.1:{nodes[0].monitor_port}"
    sup.info["nats_cluster"] = [
        {"name": n.name, "url": n.url, "monitor_url": f"http://127.0.0.1:{n.monitor_port}"}
        for n in nodes
    ]
    return ",".join(n.url for n in nodes)


def start_embedded(
    sup: Supervisor,
    data: DataDir,
    env: Mapping[str, str],
    console: Console,
    cluster: bool = False,
) -> StackUrls:
    """Start, under supervision, an embedded server for every URL not given in `env`.

    The embedded NATS runs with authorization: one user per service (passwords in
    `<data>/nats/users.json`, 0600); a NATS given by URL is used as it is. With
    `cluster`, NATS is a three-node JetStream cluster on loopback.
    """
    urls: dict[str, str] = {}
    passwords: dict[str, str] | None = None
    for var, name in _SERVER_NAMES.items():
        if env.get(var):
            say(f"using {name} at {env[var]} ({var})")
            urls[var] = env[var]
    try:
        if "TOLLGATE_NATS_URL" not in urls and cluster:
            passwords = nats_passwords(data.root / "nats")
            urls["TOLLGATE_NATS_URL"] = start_nats_cluster(sup, data, passwords)
            sup.info["nats_users_file"] = str(data.root / "nats" / "users.json")
        if "TOLLGATE_NATS_URL" not in urls:
            d = data.root / "nats"
            port, monitor = free_port(PREFERRED_NATS_PORT), free_port()
            passwords = nats_passwords(d)
            conf = write_nats_config(d, port, monitor, passwords)
            say(f"starting NATS with JetStream on 127.0.0.1:{port} (data in {d})")
            nats = ProcessUnit("nats", nats_argv(conf))
            sup.add(Supervised(nats, "server", port, stop_phase=3))
            wait_for_port(port, nats, "nats-server")
            urls["TOLLGATE_NATS_URL"] = f"nats://127.0.0.1:{port}"
            sup.info["nats_monitor_url"] = f"http://127.0.0.1:{monitor}"
            # Where the users' passwords are (never the passwords: status.json is 0644).
            sup.info["nats_users_file"] = str(d / "users.json")
        if "TOLLGATE_DATABASE_URL" not in urls:
            d = data.root / "pg"
            d.mkdir(parents=True, exist_ok=True)
            if not (d / "PG_VERSION").exists():
                say("first start: creating the PostgreSQL data folder (a few seconds)")
            say(f"starting PostgreSQL (unix socket, data in {d})")
            pg = PostgresUnit(d)
            sup.add(Supervised(pg, "server", None, stop_phase=4))
            if not pg.alive():
                raise RuntimeError(f"PostgreSQL did not start (see {data.log_file('postgres')})")
            urls["TOLLGATE_DATABASE_URL"] = pg.url
        if "TOLLGATE_REDIS_URL" not in urls:
            d = data.root / "redis"
            d.mkdir(parents=True, exist_ok=True)
            port = free_port(PREFERRED_REDIS_PORT)
            say(f"starting Redis on 127.0.0.1:{port} (data in {d})")
            redis = ProcessUnit("redis", redis_argv(d, port))
            sup.add(Supervised(redis, "server", port, stop_phase=2))
            wait_for_port(port, redis, "redis-server")
            urls["TOLLGATE_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    except Exception as exc:  # pgserver and subprocess failures have no common type
        raise StartError(
            f"could not start the embedded servers: {exc} (logs under {data.root})"
        ) from exc
    return StackUrls(
        nats_url=urls["TOLLGATE_NATS_URL"],
        database_url=urls["TOLLGATE_DATABASE_URL"],
        redis_url=urls["TOLLGATE_REDIS_URL"],
        nats_passwords=passwords,
    )


def check_data_version(data: DataDir) -> None:
    written = data.written_by()
    if written is not None:
        refusal = newer_data_message(data.root, written, tollgate_version())
        if refusal:
            raise StartError(refusal)


def check_not_running(data: DataDir) -> None:
    pid = data.running_pid()
    if pid is not None:
        raise StartError(
            f"Tollgate is already running on the data folder {data.root} (supervisor pid {pid}); "
            "`./just status` shows it, `./just down` stops it"
        )


def up(
    data_dir: Path,
    base_port: int = plan.BASE_PORT,
    health_timeout: float = 180.0,
    detached_child: bool = False,
    cluster: bool = False,
    replicas: int = 1,
    restart_backoff_s: float = FIRST_DELAY_S,
) -> int:
    env = dict(os.environ)
    cwd = find_repo_root(Path.cwd()) or Path.cwd()
    python = sys.executable
    data = DataDir(data_dir)
    console = Console(data.log_file("supervisor") if detached_child else None)
    _CONSOLE[0] = console
    sup = Supervisor(console, data, restart_backoff_s=restart_backoff_s)
    sup.info.update(
        {
            "base_port": base_port,
            "data_dir": str(data_dir),
            "cluster": cluster,
            "replicas": replicas,
        }
    )
    claimed = False
    with sigterm_as_interrupt():
        try:
            say(f"data folder: {data_dir}")
            check_not_running(data)
            check_data_version(data)
            check_ports(base_port, env.get("TOLLGATE_HOST") or "127.0.0.1", replicas)
            data.claim()
            claimed = True
            sup.write_status()
            stack = start_embedded(sup, data, env, console, cluster)
            server_urls = stack.env()
            sup.info["servers"] = server_urls
            provision(stack.nats_url, stack.nats_auth("provision"), 3 if cluster else 1)
            migrate(python, {**env, **server_urls}, cwd)
            data.mark()
        except StartError as exc:
            say(str(exc))
            sup.shutdown()
            if claimed:
                data.release()
            return 1
        except KeyboardInterrupt:
            say("interrupted while starting; stopping the servers")
            sup.shutdown()
            data.release()
            return 130
        except BaseException:
            sup.shutdown()
            if claimed:
                data.release()
            raise
    try:
        return run_services(
            sup,
            python,
            env,
            server_urls,
            data,
            cwd,
            base_port,
            health_timeout,
            stack.nats_passwords,
            replicas,
        )
    finally:
        say("stopping the servers")
        sup.shutdown()
        data.release()
        say(f"stopped; data kept in {data_dir}")


def run_services(
    sup: Supervisor,
    python: str,
    env: Mapping[str, str],
    server_urls: Mapping[str, str],
    data: DataDir,
    cwd: Path,
    base_port: int,
    health_timeout: float,
    nats_passwords: Mapping[str, str] | None = None,
    replicas: int = 1,
) -> int:
    """Supervise the five services (`replicas` of each, behind a round-robin front when
    more than one) until Ctrl-C/SIGTERM (or they never became healthy)."""
    custom = bool(env.get("TOLLGATE_CONFIG"))

    def ready() -> None:
        sup.info["ready_at"] = time.time()
        sup.write_status()

    users_file = sup.info.get("nats_users_file")
    banner = plan.banner(
        server_urls, base_port, custom, Path(str(users_file)) if users_file else None, replicas
    )
    watch = HealthWatch(base_port, health_timeout, banner, ready, replicas)
    chosen = plan.instances(base_port, replicas)
    width = max(len(i.name) for i in chosen)
    last = max(i.port for i in chosen)
    say(f"starting {', '.join(i.name for i in chosen)} on ports {base_port}-{last}")
    front = plan.front_port(base_port, replicas)
    if front is not None:
        backends = [i.port for i in chosen if i.spec.name == "ingress"]
        say(f"round-robin front on {plan.local_url(front)} -> ingress ports {backends}")
        sup.add(
            Supervised(
                ProcessUnit(
                    "front",
                    plan.front_command(python, front, backends),
                    cwd=cwd,
                    log_path=data.log_file("front"),
                    console=sup.console,
                    prefix_width=width,
                ),
                "service",
                front,
                stop_phase=0,
            )
        )
    for inst in chosen:
        unit = ProcessUnit(
            inst.name,
            plan.service_command(python, inst.spec),
            env=plan.instance_env(inst, env, server_urls, data.root, base_port, nats_passwords),
            cwd=cwd,
            log_path=data.log_file(inst.name),
            console=sup.console,
            prefix_width=width,
        )
        sup.add(
            Supervised(
                unit, "service", inst.port, stop_phase=0 if inst.spec.name == "ingress" else 1
            )
        )
    say("waiting for every /health to answer")
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        if not stop.is_set():
            say(
                f"{signal.Signals(signum).name}: stopping ingress, then the consumers, "
                "then the servers"
            )
        stop.set()

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    watch.start()
    try:
        sup.run(stop)
    finally:
        watch.stop()
        say("stopping the services")
        # Another Ctrl-C while stopping changes nothing: every phase is bounded.
        for s in previous:
            signal.signal(s, lambda *_: None)
        sup.shutdown("service")
        say("services stopped")
        for s, handler in previous.items():
            signal.signal(s, handler)
    if watch.failure and len(watch.healthy) < len(watch.ports):
        say(f"stopped while {watch.failure}")
        return 1
    return 0


def servers(data_dir: Path, also_provision: bool) -> int:
    """Only the three servers, until Ctrl-C/SIGTERM; their URLs go to stdout as exports."""
    env = dict(os.environ)
    stack = EmbeddedStack(data_dir=data_dir, say=True)
    with sigterm_as_interrupt():
        try:
            say(f"data folder: {data_dir}")
            urls = start_servers(stack, env)
            server_urls = urls.env()
            if also_provision:
                provision(urls.nats_url, urls.nats_auth("provision"))
            for line in plan.export_lines(server_urls):
                print(line, flush=True)
            say("servers are up; Ctrl-C stops them")
            while True:
                signal.pause()
        except StartError as exc:
            say(str(exc))
            return 1
        except KeyboardInterrupt:
            say("stopping the servers")
        finally:
            stack.stop()
    say(f"stopped; data kept in {data_dir}")
    return 0
