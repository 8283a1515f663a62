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
) -> list[PortConflict]:
    """The service ports that something else already listens on."""
    return [
        PortConflict(spec.port(base_port), spec.name, identify(spec.port(base_port)))
        for spec in SERVICES
        if not is_free(spec.port(base_port))
    ]


def conflict_message(conflicts: Iterable[PortConflict], base_port: int = BASE_PORT) -> str:
    lines = [c.describe() for c in conflicts]
    tollgate = any(c.occupant and "tollgate" in c.occupant for c in conflicts)
    hint = (
        "Tollgate looks already up (another `./just up`?): stop it with Ctrl-C in its terminal"
        if tollgate
        else "stop whatever listens there"
    )
    last = base_port + len(SERVICES) - 1
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
) -> str:
    """What a person reads once everything answers /health."""
    base = local_url(base_port)
    width = max(len(s.name) for s in SERVICES)
    lines = ["", "Tollgate is up.", ""]
    lines += [f"  {s.name:<{width}}  {local_url(s.port(base_port))}" for s in SERVICES]
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
