"""Runs the whole system on one machine: servers, provisioning, migrations, five services."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

import honcho.manager
import httpx
from honcho.manager import Manager

from tollgate_devstack import plan
from tollgate_devstack.embedded import EmbeddedStack, port_is_free
from tollgate_shared.provision import provision_url

# uvicorn drains for up to 10 s on SIGTERM; honcho's default 5 s grace would
# SIGKILL a service that is still flushing its spool.
honcho.manager.KILL_WAIT = 15

_SERVER_NAMES = {
    "TOLLGATE_NATS_URL": "NATS",
    "TOLLGATE_DATABASE_URL": "PostgreSQL",
    "TOLLGATE_REDIS_URL": "Redis",
}


class StartError(RuntimeError):
    """Something a person must fix before the system can start; the message says what."""


def say(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


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


def check_ports(base_port: int, host: str) -> None:
    conflicts = plan.port_conflicts(lambda p: port_is_free(p, host), base_port, identify)
    if conflicts:
        raise StartError(plan.conflict_message(conflicts, base_port))


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


def start_servers(stack: EmbeddedStack, env: Mapping[str, str]) -> dict[str, str]:
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
    return urls.env()


def provision(nats_url: str) -> None:
    say("provisioning streams, durable consumers and buckets")
    try:
        asyncio.run(provision_url(nats_url))
    except Exception as exc:
        raise StartError(f"provisioning NATS at {nats_url} failed: {exc}") from exc


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

    def __init__(self, base_port: int, timeout: float, banner: str) -> None:
        self.base_port = base_port
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
        deadline = time.monotonic() + self.timeout
        last: dict[str, str] = {}
        while not self.done.is_set():
            for spec in plan.SERVICES:
                if spec.name not in self.healthy:
                    ok, detail = _health(spec.port(self.base_port))
                    if ok:
                        self.healthy.add(spec.name)
                        say(
                            f"{spec.name} is healthy on {plan.local_url(spec.port(self.base_port))}"
                        )
                    last[spec.name] = detail
            if len(self.healthy) == len(plan.SERVICES):
                print(self.banner, file=sys.stderr, flush=True)
                return
            if time.monotonic() > deadline:
                waiting = [s.name for s in plan.SERVICES if s.name not in self.healthy]
                self.failure = f"not healthy within {self.timeout:.0f}s: " + "; ".join(
                    f"{n} (/health: {last.get(n, 'no answer')})" for n in waiting
                )
                say(self.failure)
                # Stop through the supervisor's own signal path, on the main thread.
                os.kill(os.getpid(), signal.SIGTERM)
                return
            self.done.wait(0.5)


class _Manager(Manager):  # type: ignore[misc]
    """honcho's Manager, starting the health watch once the processes are forked."""

    def __init__(self, watch: HealthWatch, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._watch = watch

    def _start(self) -> None:
        super()._start()
        self._watch.start()


def run_services(
    python: str,
    env: Mapping[str, str],
    server_urls: Mapping[str, str],
    data_dir: Path,
    cwd: Path,
    base_port: int,
    health_timeout: float,
) -> int:
    """Run the five services until Ctrl-C/SIGTERM or until one of them exits."""
    custom = bool(env.get("TOLLGATE_CONFIG"))
    watch = HealthWatch(base_port, health_timeout, plan.banner(server_urls, base_port, custom))
    manager = _Manager(watch)
    for spec in plan.SERVICES:
        manager.add_process(
            spec.name,
            plan.service_command(python, spec),
            env=plan.service_env(spec, env, server_urls, data_dir, base_port),
            cwd=str(cwd),
        )
    last = base_port + len(plan.SERVICES) - 1
    say(f"starting {', '.join(s.name for s in plan.SERVICES)} on ports {base_port}-{last}")
    say("waiting for every /health to answer")
    try:
        manager.loop()
    finally:
        watch.stop()
    if watch.failure:
        say(f"stopped: {watch.failure}")
        return 1
    if manager.returncode in (130, 143):
        say("services stopped")
        return 0
    down = [s.name for s in plan.SERVICES if s.name not in watch.healthy]
    when = f"before {', '.join(down)} became healthy" if down else "after start"
    say(f"a service exited (code {manager.returncode}) {when}; see its output above")
    return 1


def up(data_dir: Path, base_port: int = plan.BASE_PORT, health_timeout: float = 180.0) -> int:
    env = dict(os.environ)
    cwd = find_repo_root(Path.cwd()) or Path.cwd()
    python = sys.executable
    stack = EmbeddedStack(data_dir=data_dir, say=True)
    with sigterm_as_interrupt():
        try:
            say(f"data folder: {data_dir}")
            check_ports(base_port, env.get("TOLLGATE_HOST") or "127.0.0.1")
            server_urls = start_servers(stack, env)
            provision(server_urls["TOLLGATE_NATS_URL"])
            migrate(python, {**env, **server_urls}, cwd)
        except StartError as exc:
            say(str(exc))
            stack.stop()
            return 1
        except KeyboardInterrupt:
            say("interrupted while starting; stopping the servers")
            stack.stop()
            return 130
        except BaseException:
            stack.stop()
            raise
    try:
        return run_services(python, env, server_urls, data_dir, cwd, base_port, health_timeout)
    finally:
        # honcho's signal handlers are still installed: another Ctrl-C here
        # does not interrupt stopping the servers.
        say("stopping the servers")
        stack.stop()
        say(f"stopped; data kept in {data_dir}")


def servers(data_dir: Path, also_provision: bool) -> int:
    """Only the three servers, until Ctrl-C/SIGTERM; their URLs go to stdout as exports."""
    env = dict(os.environ)
    stack = EmbeddedStack(data_dir=data_dir, say=True)
    with sigterm_as_interrupt():
        try:
            say(f"data folder: {data_dir}")
            server_urls = start_servers(stack, env)
            if also_provision:
                provision(server_urls["TOLLGATE_NATS_URL"])
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
