"""Who may publish and subscribe to what on NATS: one user per service, built from `names`.

Each service connects as its own user (TOLLGATE_NATS_USER / TOLLGATE_NATS_PASSWORD),
allowed only its own subjects, the KV buckets it writes (only admin writes keys,
teams, users and models; only the ledger writes spend), read access to the buckets
it watches, the JetStream API subjects of the durables it binds (so no service can
pull or ack another's messages), and replies only on its own inbox subjects (so none
can read what is delivered to another). The `provision` user is the operator: it
creates streams, consumers and buckets, and takes backups (`$JS.API.>`), but
cannot publish an event or write a bucket entry. The `supervisor` user (the
supervisor of `./just up`, so only in the embedded NATS) may only publish `ops.>`
events (crash loops).

Everything that renders a NATS server configuration takes the users from here:
the embedded stack (literal passwords from its data folder), Docker Compose and
Helm (passwords from the environment, `$TOLLGATE_NATS_PASSWORD_<USER>`).
`python -m tollgate_shared.permissions write` regenerates the checked-in files.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tollgate_shared import names

# Replies and pull deliveries reach a client on its inbox subjects. Each user has its own
# prefix (the client connects with it: `connect_nats`), and may subscribe only under it,
# so no service can listen in on what JetStream delivers to another.
INBOX_ROOT = "_INBOX"


def inbox_prefix(user: str) -> str:
    """The inbox prefix a client of NATS user `user` connects with (`_INBOX.ledger`)."""
    return f"{INBOX_ROOT}.{user}"


def inbox(user: str) -> str:
    """The inbox subjects user `user` may subscribe to (`_INBOX.ledger.>`)."""
    return f"{inbox_prefix(user)}.>"


# JetStream API subjects every service may use: account and stream metadata (health,
# readiness probes, `wait_provisioned`), nothing that changes anything.
_READ_METADATA = ("$JS.API.INFO", "$JS.API.STREAM.INFO.>", "$JS.API.STREAM.NAMES")


@dataclass(frozen=True)
class NatsUser:
    """One NATS user: what it may publish to and subscribe to (allow lists)."""

    name: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    description: str

    @property
    def password_env(self) -> str:
        """The environment variable a NATS server reads this user's password from."""
        return "TOLLGATE_NATS_PASSWORD_" + re.sub(r"[^A-Z0-9]", "_", self.name.upper())

    def permissions(self) -> dict[str, dict[str, list[str]]]:
        return {
            "publish": {"allow": list(self.publish)},
            "subscribe": {"allow": list(self.subscribe)},
        }


def _dedupe(subjects: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(subjects))


def _stream_prefix(stream: names.StreamSpec) -> tuple[str, ...]:
    return stream.subjects


def kv_stream(bucket: str) -> str:
    return f"KV_{bucket}"


def obj_stream(bucket: str) -> str:
    return f"OBJ_{bucket}"


def read_stream(stream: str) -> tuple[str, ...]:
    """Read a stream's messages by sequence or subject, and watch it (ordered consumers,
    which is how a KV watch and an object store read work)."""
    return (
        *get_messages(stream),
        # Ephemeral consumers only: the server refuses a durable name on these subjects
        # (durables are created by `provision`, under CONSUMER.DURABLE.CREATE).
        f"$JS.API.CONSUMER.CREATE.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.INFO.{stream}.>",
        f"$JS.API.CONSUMER.DELETE.{stream}.>",
        f"$JS.FC.{stream}.>",
    )


def get_messages(stream: str) -> tuple[str, ...]:
    """Read single messages of a stream by sequence or subject."""
    return (
        f"$JS.API.DIRECT.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.>",
        f"$JS.API.STREAM.MSG.GET.{stream}",
    )


def bind_durable(spec: names.ConsumerSpec) -> tuple[str, ...]:
    """Pull from, ack and inspect one provisioned durable (never create or change it), and
    re-read a message of its stream by sequence (a dead letter named by the max-deliveries
    advisory, the LLM event an export dead letter points at)."""
    return (
        f"$JS.API.CONSUMER.INFO.{spec.stream}.{spec.name}",
        f"$JS.API.CONSUMER.MSG.NEXT.{spec.stream}.{spec.name}",
        f"$JS.ACK.{spec.stream}.{spec.name}.>",
        *get_messages(spec.stream),
    )


# Which stream each service publishes its events to.
PUBLISHES: Mapping[str, names.StreamSpec] = {
    "ingress": names.STREAM_LLM,
    "admin": names.STREAM_ADMIN,
    "ledger": names.STREAM_LEDGER,
    "alerter": names.STREAM_ALERT,
    "exporter": names.STREAM_EXPORT,
}
SERVICES: tuple[str, ...] = tuple(PUBLISHES)
# Who writes the object store of large bodies, and who reads it back.
BODIES_WRITTEN_BY = ("ingress",)
BODIES_READ_BY = ("ingress", "ledger", "exporter")
# Beyond the service's own durables: the exporter reads its dead letters from the
# EXPORT stream and deletes each once replayed.
EXTRA_PUBLISH: Mapping[str, tuple[str, ...]] = {
    "exporter": (
        *read_stream(names.STREAM_EXPORT.name),
        f"$JS.API.STREAM.MSG.DELETE.{names.STREAM_EXPORT.name}",
    ),
}


# Core subscriptions beyond replies: the console's Live view follows finished calls.
EXTRA_SUBSCRIBE: Mapping[str, tuple[str, ...]] = {
    "ingress": (f"{names.LLM_REQUEST_COMPLETED}.*", f"{names.LLM_REQUEST_FAILED}.*"),
}


def service_user(service: str) -> NatsUser:
    publish: list[str] = [*_stream_prefix(PUBLISHES[service]), *_READ_METADATA]
    subscribe: list[str] = [inbox(service), *EXTRA_SUBSCRIBE.get(service, ())]
    for spec in names.ALL_CONSUMERS:
        if spec.service == service:
            publish += bind_durable(spec)
            subscribe.append(names.max_deliveries_advisory(spec))
    for use in names.BUCKET_USES:
        if use.written_by == service:
            publish.append(f"$KV.{use.bucket}.>")
        if use.written_by == service or service in use.read_by:
            publish += read_stream(kv_stream(use.bucket))
    if service in BODIES_WRITTEN_BY:
        publish += (
            f"$O.{names.OBJ_BODIES}.>",
            f"$JS.API.STREAM.PURGE.{obj_stream(names.OBJ_BODIES)}",
        )
    if service in BODIES_READ_BY:
        publish += read_stream(obj_stream(names.OBJ_BODIES))
    publish += EXTRA_PUBLISH.get(service, ())
    return NatsUser(
        service,
        _dedupe(publish),
        _dedupe(subscribe),
        f"the {service} service",
    )


PROVISION = NatsUser(
    "provision",
    # The JetStream API (streams, consumers, buckets, `rebuild`'s ordered consumers),
    # flow control, and snapshot acks/restore chunks for backup and restore. No event
    # subject and no `$KV.`/`$O.` write: the operator cannot mint a key or zero a total.
    ("$JS.API.>", "$JS.FC.>", "$JS.SNAPSHOT.>"),
    (inbox("provision"),),
    "provisioning, backup, restore and rebuild",
)
# The supervisor of `./just up`: its crash-loop events (`ops.>`) and nothing else.
SUPERVISOR = NatsUser(
    "supervisor",
    names.STREAM_OPS.subjects,
    (inbox("supervisor"),),
    "the supervisor of `./just up`: crash-loop events",
)
# `helm test` and readiness checks: stream state only.
HELM_TEST = NatsUser("helm-test", _READ_METADATA, (inbox("helm-test"),), "read-only stream state")

# The users of every deployment: the embedded stack, Docker Compose and Helm.
USERS: tuple[NatsUser, ...] = (
    *(service_user(s) for s in SERVICES),
    PROVISION,
    HELM_TEST,
)
# Users only the embedded NATS of `./just up` has: Compose restarts containers and
# Kubernetes restarts pods themselves, so neither runs the supervisor that needs one.
LOCAL_USERS: tuple[NatsUser, ...] = (SUPERVISOR,)
EMBEDDED_USERS: tuple[NatsUser, ...] = (*USERS, *LOCAL_USERS)
# Every user name the embedded NATS knows (each gets a password in `users.json`).
USER_NAMES: tuple[str, ...] = tuple(u.name for u in EMBEDDED_USERS)


def user(name: str) -> NatsUser:
    for u in EMBEDDED_USERS:
        if u.name == name:
            return u
    raise KeyError(f"no NATS user {name!r} (known: {', '.join(USER_NAMES)})")


# --- rendering ---------------------------------------------------------------------------


def _user_line(u: NatsUser, password: str | None) -> str:
    # NATS reads `$NAME` unquoted as an environment variable; a literal password is quoted
    # (JSON string syntax, which the NATS config format accepts).
    secret = f"${u.password_env}" if password is None else json.dumps(password)
    perms = json.dumps(u.permissions(), separators=(", ", ": "))
    return f"{{user: {json.dumps(u.name)}, password: {secret}, permissions: {perms}}}"


def render_users(
    passwords: Mapping[str, str] | None = None,
    indent: str = "  ",
    users: Sequence[NatsUser] = EMBEDDED_USERS,
) -> str:
    """The `users = [...]` list: literal passwords, or `$TOLLGATE_NATS_PASSWORD_<USER>`."""
    if passwords is not None:
        missing = [u.name for u in users if u.name not in passwords]
        if missing:
            raise ValueError(f"no password for NATS user(s) {', '.join(missing)}")
    lines = [
        f"{indent}  {_user_line(u, None if passwords is None else passwords[u.name])}"
        for u in users
    ]
    return f"{indent}users = [\n" + "\n".join(lines) + f"\n{indent}]\n"


HEADER = (
    "# Generated by `python -m tollgate_shared.permissions write` from\n"
    "# tollgate_shared/permissions.py (built from tollgate_shared/names.py): do not edit.\n"
)


def render_authorization(
    passwords: Mapping[str, str] | None = None, users: Sequence[NatsUser] = EMBEDDED_USERS
) -> str:
    """An `authorization {}` block: the users in the server's default account (where the
    embedded stack and Compose keep their streams)."""
    return "authorization {\n" + render_users(passwords, users=users) + "}\n"


def render_account(
    account: str = "TOLLGATE",
    passwords: Mapping[str, str] | None = None,
    users: Sequence[NatsUser] = USERS,
) -> str:
    """An `accounts {}` block with one JetStream-enabled account holding the users (Helm)."""
    rendered = render_users(passwords, indent="    ", users=users)
    return f"accounts {{\n  {account} {{\n    jetstream: enabled\n{rendered}  }}\n}}\n"


def permissions_document() -> dict[str, object]:
    """Machine-readable: every deployed user, its password variable and its allow lists."""
    return {
        "users": [
            {
                "user": u.name,
                "description": u.description,
                "password_env": u.password_env,
                "permissions": u.permissions(),
            }
            for u in USERS
        ]
    }


# --- checked-in files --------------------------------------------------------------------

COMPOSE_AUTH = Path("infra/nats/tollgate-auth.conf")
HELM_AUTH = Path("infra/helm/tollgate/files/nats-auth.conf")
HELM_PERMISSIONS = Path("infra/helm/tollgate/files/nats-permissions.json")


def generated_files() -> dict[Path, str]:
    """Repository-relative path -> the content this module renders for it."""
    return {
        COMPOSE_AUTH: HEADER + render_authorization(users=USERS),
        HELM_AUTH: HEADER + render_account(),
        HELM_PERMISSIONS: json.dumps(permissions_document(), indent=1) + "\n",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["write", "show"])
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="repository root")
    args = parser.parse_args(argv)
    for path, text in generated_files().items():
        if args.command == "show":
            print(f"--- {path}\n{text}")
            continue
        target = args.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
