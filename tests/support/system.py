"""The whole Tollgate system as real processes, for e2e tests: migrate, start, stop.

`running_system(stack, tmp, config)` applies both migrations to a fresh
database of the session's PostgreSQL, starts admin, ledger, exporter and
alerter on free ports, then ingress forwarding to them, and yields a `System`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from support.processes import Service, launch_service, stop_service, wait_healthy
from tollgate_devstack.embedded import StackUrls, free_port

BACKENDS = ("admin", "ledger", "exporter", "alerter")


@dataclass
class System:
    services: dict[str, Service] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def ingress_url(self) -> str:
        return self.services["ingress"].url

    def url(self, name: str) -> str:
        return self.services[name].url

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{s.logs()[-3000:]}" for n, s in self.services.items())


def migrate(env: Mapping[str, str], services: tuple[str, ...] = ("ledger", "admin")) -> None:
    """Each service's migrations, side by side (each owns its own schema)."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", f"tollgate_{name}", "migrate"],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for name in services
    ]
    for name, proc in zip(services, procs, strict=True):
        out, _ = proc.communicate(timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"tollgate_{name} migrate failed:\n{out.decode(errors='replace')}")


@contextlib.contextmanager
def running_system(
    stack: StackUrls,
    tmp: Path,
    config: Path,
    extra_env: Mapping[str, str] | None = None,
    backends: tuple[str, ...] = BACKENDS,
    database_url: str | None = None,
) -> Iterator[System]:
    env = {**stack.env(), "TOLLGATE_CONFIG": str(config), **(extra_env or {})}
    if database_url:
        env["TOLLGATE_DATABASE_URL"] = database_url
    migrate(env, tuple(b for b in ("ledger", "admin") if b in backends))
    system = System(env=env)
    try:
        # All five start side by side: ingress is told the others' ports before they listen.
        ports: set[int] = set()
        while len(ports) < len(backends) + 1:  # none bound yet, so ask until they differ
            ports.add(free_port())
        port_of = iter(sorted(ports))
        for name in backends:
            system.services[name] = launch_service(f"tollgate_{name}", next(port_of), env, tmp)
        ingress_env = {
            **env,
            "TOLLGATE_SPOOL_PATH": str(tmp / "ingress-spool.sqlite3"),
            **{f"TOLLGATE_{n.upper()}_URL": system.services[n].url for n in system.services},
        }
        system.services["ingress"] = launch_service(
            "tollgate_ingress", next(port_of), ingress_env, tmp
        )
        wait_healthy(list(system.services.values()))
        yield system
    finally:
        for svc in reversed(list(system.services.values())):
            stop_service(svc)
