"""The NATS users are spelled once (tollgate_shared.permissions): the checked-in files
Compose and Helm use are exactly what the code renders, and Compose wires each service
to its own user."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tollgate_shared import names, permissions

ROOT = Path(__file__).resolve().parents[3]
INFRA = ROOT / "infra"


@pytest.mark.parametrize("path", list(permissions.generated_files()), ids=str)
def test_checked_in_file_is_what_the_code_renders(path: Path) -> None:
    text = (ROOT / path).read_text()
    assert text == permissions.generated_files()[path], (
        f"{path} is stale: run `./just nats-auth` (python -m tollgate_shared.permissions write)"
    )


def test_every_service_has_a_user_and_only_a_buckets_writer_may_put() -> None:
    assert set(permissions.SERVICES) == {c.service for c in names.CONSUMERS} | {
        "ingress",
        "admin",
    }
    for use in names.BUCKET_USES:
        writers = [u.name for u in permissions.USERS if f"$KV.{use.bucket}.>" in u.publish]
        assert writers == [use.written_by], use.bucket
    for user in permissions.USERS:
        # Nobody may write `$KV.>`/`>` wholesale or subscribe beyond inboxes, advisories and
        # (ingress's console) finished calls.
        assert not {">", "$KV.>", "$O.>", "$JS.ACK.>"} & set(user.publish), user.name
        extra = permissions.EXTRA_SUBSCRIBE.get(user.name, ())
        for subject in user.subscribe:
            assert (
                subject == permissions.inbox(user.name)
                or subject in extra
                or subject.startswith(f"{names.MAX_DELIVERIES_ADVISORY}.")
            ), (user.name, subject)
    assert permissions.EXTRA_SUBSCRIBE.keys() == {"ingress"}
    assert len({u.password_env for u in permissions.USERS}) == len(permissions.USERS)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((INFRA / "docker-compose.yml").read_text())
    return data


def test_compose_nats_nodes_include_the_generated_users(compose: dict[str, Any]) -> None:
    conf = (INFRA / "nats" / "nats-cluster.conf").read_text()
    assert re.search(r"^include tollgate-auth\.conf$", conf, flags=re.M)
    nodes = [n for n in compose["services"] if n.startswith("nats-")]
    assert nodes
    for node in nodes:
        svc = compose["services"][node]
        assert "./nats/tollgate-auth.conf:/etc/nats/tollgate-auth.conf:ro" in svc["volumes"]
        assert "./nats/nats-cluster.conf:/etc/nats/nats.conf:ro" in svc["volumes"]
        for user in permissions.USERS:
            value = svc["environment"][user.password_env]
            assert value.startswith(f"${{{user.password_env}:?"), (node, user.name)


def test_compose_services_connect_as_their_own_user(compose: dict[str, Any]) -> None:
    expected = {s: s for s in permissions.SERVICES} | {"provision": "provision"}
    for name, user_name in expected.items():
        env = compose["services"][name]["environment"]
        assert env["TOLLGATE_NATS_USER"] == user_name, name
        password_env = permissions.user(user_name).password_env
        assert env["TOLLGATE_NATS_PASSWORD"].startswith(f"${{{password_env}:?"), name
        assert env["TOLLGATE_NATS_URL"] == "nats://nats:4222"  # no credentials in the URL
