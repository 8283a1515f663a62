"""What `up` runs: the services, their ports and environments, and the banner (pure)."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

BASE_PORT = 4000
URL_VARS = ("TOLLGATE_NATS_URL", "TOLLGATE_DATABASE_URL", "TOLLGATE_REDIS_URL")
DEMO_KEY = "sk-1234"


@dataclass(frozen=True)
class ServiceSpec:
    """One service process: `python -m <module>` on `base_port + offset`."""

    name: str
    offset: int
    # The ingress setting that points at this service, when ingress forwards to it.
    url_var: str | None
    migrates: bool = False

    @property
    def module(self) -> str:
        return f"tollgate_{self.name}"

    def port(self, base_port: int = BASE_PORT) -> int:
        return base_port + self.offset


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("ingress", 0, None),
    ServiceSpec("admin", 1, "TOLLGATE_ADMIN_URL", migrates=True),
    ServiceSpec("ledger", 2, "TOLLGATE_LEDGER_URL", migrates=True),
    ServiceSpec("exporter", 3, "TOLLGATE_EXPORTER_URL"),
    ServiceSpec("alerter", 4, "TOLLGATE_ALERTER_URL"),
)


def local_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


@dataclass(frozen=True)
class Instance:
    """One running copy of a service: replica `index` (0-based) of `spec` on `port`."""

    spec: ServiceSpec
    index: int
    port: int
    replicas: int = 1

    @property
    def name(self) -> str:
        """`ledger` alone; `ledger-1`, `ledger-2`, … when the service has replicas."""
        return self.spec.name if self.replicas == 1 else f"{self.spec.name}-{self.index + 1}"


def instances(base_port: int = BASE_PORT, replicas: int = 1) -> list[Instance]:
    """Every service process `up` runs.

    One replica each: ingress on `base_port`, the others on the next four (as always).
    With N > 1 replicas the round-robin front takes `base_port` (the one URL clients
    use) and the replicas follow it service by service, each service's replicas on
    consecutive ports: ingress on base+1…base+N, admin on base+N+1…base+2N, and so on.
    """
    if replicas < 1:
        raise ValueError("replicas must be at least 1")
    if replicas == 1:
        return [Instance(s, 0, s.port(base_port)) for s in SERVICES]
    return [
        Instance(s, i, base_port + 1 + s.offset * replicas + i, replicas)
        for s in SERVICES
        for i in range(replicas)
    ]


def front_port(base_port: int, replicas: int) -> int | None:
    """Where the round-robin front listens (None with one replica: ingress is the front)."""
    return base_port if replicas > 1 else None


def all_ports(base_port: int = BASE_PORT, replicas: int = 1) -> list[tuple[int, str]]:
    """(port, who needs it) for every port `up` listens on."""
    ports = [(i.port, i.name) for i in instances(base_port, replicas)]
    front = front_port(base_port, replicas)
    return ports if front is None else [(front, "front"), *ports]


def instance_env(
    inst: Instance,
    base_env: Mapping[str, str],
    server_urls: Mapping[str, str],
    data_dir: Path,
    base_port: int = BASE_PORT,
    nats_passwords: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """`service_env` for one replica: its own port and spool, and the replicas of the
    other services with the same index as the ones it talks to."""
    env = service_env(inst.spec, base_env, server_urls, data_dir, base_port, nats_passwords)
    if inst.replicas == 1:
        return env
    env["TOLLGATE_PORT"] = str(inst.port)
    for other in instances(base_port, inst.replicas):
        if other.spec.url_var and other.index == inst.index:
            env[other.spec.url_var] = local_url(other.port)
    if inst.spec.name == "ingress" and "TOLLGATE_SPOOL_PATH" not in base_env:
        # Each replica spools to its own file: SQLite is one writer's.
        env["TOLLGATE_SPOOL_PATH"] = str(data_dir / f"ingress-spool-{inst.index + 1}.sqlite3")
    return env


def service_env(
    spec: ServiceSpec,
    base_env: Mapping[str, str],
    server_urls: Mapping[str, str],
    data_dir: Path,
    base_port: int = BASE_PORT,
    nats_passwords: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The full environment of one service process.

    Everything the person exported is passed through (TOLLGATE_CONFIG,
    TOLLGATE_MASTER_KEY, TOLLGATE_LOG_LEVEL, …); the server URLs, the port and
    the addresses of the other services are set by the supervisor. With
    `nats_passwords` (the embedded NATS has authorization) each service connects as
    its own NATS user, named after it.
    """
    env = dict(base_env)
    env.update(server_urls)
    if nats_passwords is not None:
        env["TOLLGATE_NATS_USER"] = spec.name
        env["TOLLGATE_NATS_PASSWORD"] = nats_passwords[spec.name]
    env["TOLLGATE_PORT"] = str(spec.port(base_port))
    env["TOLLGATE_PUBLIC_URL"] = local_url(base_port)
    for other in SERVICES:
        if other.url_var:
            env[other.url_var] = local_url(other.port(base_port))
    if spec.name == "ingress":
        env.setdefault("TOLLGATE_SPOOL_PATH", str(data_dir / "ingress-spool.sqlite3"))
    config = env.get("TOLLGATE_CONFIG")
    if config:
        # The services run with the repository as working directory; a relative
        # path the person typed elsewhere must still point at the same file.
        env["TOLLGATE_CONFIG"] = str(Path(config).expanduser().resolve())
    env["PYTHONUNBUFFERED"] = "1"
    return env


def service_command(python: str, spec: ServiceSpec) -> list[str]:
    """The command the supervisor runs for one service."""
    return [python, "-m", spec.module]


def front_command(python: str, port: int, backends: Iterable[int]) -> list[str]:
    """The round-robin front over the ingress replicas."""
    cmd = [python, "-m", "tollgate_devstack.front", "--port", str(port)]
    for b in backends:
        cmd += ["--backend", str(b)]
    return cmd


def migrate_command(python: str, service: str) -> list[str]:
    return [python, "-m", f"tollgate_{service}", "migrate"]


@dataclass(frozen=True)
class PortConflict:
    port: int
    service: str
    # What answers on the port, when it is an HTTP server we could identify.
    occupant: str | None = None

    def describe(self) -> str:
        who = f" by {self.occupant}" if self.occupant else ""
        return f"port {self.port} (for {self.service}) is already in use{who}"


def port_conflicts(
    is_free: Callable[[int], bool],
    base_port: int = BASE_PORT,
    identify: Callable[[int], str | None] = lambda _port: None,
    replicas: int = 1,
) -> list[PortConflict]:
    """The service ports that something else already listens on."""
    return [
        PortConflict(port, who, identify(port))
        for port, who in all_ports(base_port, replicas)
        if not is_free(port)
    ]


def conflict_message(
    conflicts: Iterable[PortConflict], base_port: int = BASE_PORT, replicas: int = 1
) -> str:
    lines = [c.describe() for c in conflicts]
    tollgate = any(c.occupant and "tollgate" in c.occupant for c in conflicts)
    hint = (
        "Tollgate looks already up (another `./just up`?): stop it with Ctrl-C in its terminal"
        if tollgate
        else "stop whatever listens there"
    )
    last = max(p for p, _ in all_ports(base_port, replicas))
    lines.append(
        f"Tollgate needs ports {base_port}-{last} on 127.0.0.1. {hint}, "
        "or pick other ports with `./just up --base-port 5000`."
    )
    return "\n".join(lines)


def export_lines(server_urls: Mapping[str, str]) -> list[str]:
    """`export TOLLGATE_…=…` lines a shell can paste."""
    return [f"export {k}={shlex.quote(v)}" for k, v in sorted(server_urls.items())]


def banner(
    server_urls: Mapping[str, str],
    base_port: int = BASE_PORT,
    custom_config: bool = False,
    nats_users_file: Path | None = None,
    replicas: int = 1,
) -> str:
    """What a person reads once everything answers /health."""
    base = local_url(base_port)
    chosen = instances(base_port, replicas)
    width = max(len(i.name) for i in chosen)
    lines = ["", "Tollgate is up.", ""]
    if replicas > 1:
        lines += [f"  {'front':<{width}}  {base}  (round-robin over the ingress replicas)"]
    lines += [f"  {i.name:<{width}}  {local_url(i.port)}" for i in chosen]
    lines += ["", "  servers:"]
    lines += [f"    {line}" for line in export_lines(server_urls)]
    if nats_users_file is not None:
        lines += [
            f"    (NATS takes one user per service; their passwords are in {nats_users_file},",
            "     e.g. TOLLGATE_NATS_USER=provision TOLLGATE_NATS_PASSWORD=… for `just provision`)",
        ]
    body = '{"model":"demo","messages":[{"role":"user","content":"Hello"}]}'
    lines += [
        "",
        "Try a chat completion (the `demo` model answers offline):",
        "",
        f'  curl {base}/v1/chat/completions -H "Authorization: Bearer {DEMO_KEY}" '
        f"-H \"Content-Type: application/json\" -d '{body}'",
        "",
        "then read its spend-log row back:",
        "",
        f'  curl -H "Authorization: Bearer {DEMO_KEY}" {base}/spend/logs',
        "",
        "Ctrl-C stops everything; data stays in the data folder for the next start.",
        "",
    ]
    if custom_config:
        lines.insert(
            -1,
            "(With your own TOLLGATE_CONFIG, use its model names and its master key instead.)",
        )
    return "\n".join(lines)
