"""NATS with the generated users (the embedded stack's own config, a real nats-server):
each service's user can do what the service does, and is refused what it must not."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from tollgate_devstack.embedded import (
    EmbeddedStack,
    StackUrls,
    free_port,
    nats_argv,
    nats_passwords,
    wait_for_port,
)
from tollgate_shared import names, permissions
from tollgate_shared.provision import provision_url
from tollgate_shared.publishing import connect_nats

REFUSAL_TIMEOUT_S = 0.5  # a refused publish is never answered; don't wait the default 5 s


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("nats-auth")


@pytest.fixture(scope="module")
def secured(data_dir: Path) -> Iterator[StackUrls]:
    """Only NATS, started as `./just up` starts it: with authorization."""
    stack = EmbeddedStack(data_dir, auth=True)
    try:
        yield stack.start(database_url="postgresql://unused", redis_url="redis://unused")
    finally:
        stack.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def provisioned_secured(secured: StackUrls) -> StackUrls:
    await provision_url(secured.nats_url, auth=secured.nats_auth("provision"))
    return secured


@dataclass
class Client:
    nc: NATS
    js: JetStreamContext
    errors: list[str] = field(default_factory=list)

    def violations(self) -> list[str]:
        return [e for e in self.errors if "permissions violation" in e.lower()]


@contextlib.asynccontextmanager
async def connected(stack: StackUrls, user: str) -> AsyncIterator[Client]:
    errors: list[str] = []

    async def record(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await connect_nats(
        stack.nats_url, f"test-{user}", auth=stack.nats_auth(user), error_cb=record
    )
    client = Client(nc, nc.jetstream(timeout=2.0), errors)
    try:
        yield client
    finally:
        await nc.close()


async def refused(client: Client, attempt: asyncio.Future[object] | object) -> str:
    """Run `attempt` (a coroutine) and return the server's permissions violation."""
    before = len(client.violations())
    with pytest.raises((asyncio.TimeoutError, NatsError)):
        await asyncio.wait_for(attempt, REFUSAL_TIMEOUT_S * 4)  # type: ignore[arg-type]
    for _ in range(20):
        if len(client.violations()) > before:
            return client.violations()[-1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no permissions violation reported: {client.errors}")


def short(client: Client) -> JetStreamContext:
    return client.nc.jetstream(timeout=REFUSAL_TIMEOUT_S)


# --- what each service needs ---------------------------------------------------------


def test_passwords_are_private_distinct_and_kept(secured: StackUrls, data_dir: Path) -> None:
    assert secured.nats_passwords is not None
    users = secured.nats_passwords
    assert set(users) == set(permissions.USER_NAMES)
    assert len(set(users.values())) == len(users)
    for private in (data_dir / "nats" / "users.json", data_dir / "nats" / "nats.conf"):
        assert private.stat().st_mode & 0o777 == 0o600, private
    # A restart keeps them (the supervisor restarts services with the same environment).
    assert nats_passwords(data_dir / "nats") == users


async def test_admin_writes_its_buckets_and_publishes_admin_events(
    provisioned_secured: StackUrls,
) -> None:
    async with connected(provisioned_secured, "admin") as admin:
        for bucket in (names.KV_KEYS, names.KV_TEAMS, names.KV_USERS, names.KV_MODELS):
            kv = await admin.js.key_value(bucket)
            await kv.put(f"admin-{uuid.uuid4().hex}", b"{}")
        ack = await admin.js.publish(names.AdminSubject.KEY_CREATED.value, b"{}")
        assert ack.stream == names.STREAM_ADMIN.name
        spend = await admin.js.key_value(names.KV_SPEND)  # reads the ledger's totals
        with contextlib.suppress(nats.js.errors.KeyNotFoundError):
            await spend.get("nobody")
        assert admin.violations() == []


async def test_ingress_publishes_llm_events_watches_state_and_offloads_bodies(
    provisioned_secured: StackUrls,
) -> None:
    key = f"key-{uuid.uuid4().hex}"
    async with connected(provisioned_secured, "admin") as admin:
        await (await admin.js.key_value(names.KV_KEYS)).put(key, b'{"v": 1}')
    async with connected(provisioned_secured, "ingress") as ingress:
        ack = await ingress.js.publish(
            names.llm_request_subject(names.LLM_REQUEST_COMPLETED, "team-a"), b"{}"
        )
        assert ack.stream == names.STREAM_LLM.name
        for bucket in (names.KV_KEYS, names.KV_TEAMS, names.KV_USERS, names.KV_MODELS):
            watcher = await (await ingress.js.key_value(bucket)).watchall()
            seen: dict[str, bytes] = {}
            async for entry in watcher:
                if entry is None:
                    break
                seen[entry.key] = entry.value or b""
            await watcher.stop()
            if bucket == names.KV_KEYS:
                assert seen[key] == b'{"v": 1}'
        assert (await (await ingress.js.key_value(names.KV_KEYS)).get(key)).value == b'{"v": 1}'
        with contextlib.suppress(nats.js.errors.KeyNotFoundError):
            await (await ingress.js.key_value(names.KV_SPEND)).get("nobody")
        bodies = await ingress.js.object_store(names.OBJ_BODIES)
        await bodies.put(f"body-{key}", b"x" * 300_000)
        assert len((await bodies.get(f"body-{key}")).data or b"") == 300_000
        assert ingress.violations() == []
    for reader in ("ledger", "exporter"):  # they hydrate offloaded content
        async with connected(provisioned_secured, reader) as client:
            body = await (await client.js.object_store(names.OBJ_BODIES)).get(f"body-{key}")
            assert len(body.data or b"") == 300_000
            assert client.violations() == []


async def test_each_consumer_pulls_and_acks_its_own_durables(
    provisioned_secured: StackUrls,
) -> None:
    async with connected(provisioned_secured, "ingress") as ingress:
        await ingress.js.publish(names.llm_request_subject(names.LLM_REQUEST_FAILED, None), b"{}")
    for service in ("ledger", "exporter", "alerter"):
        async with connected(provisioned_secured, service) as client:
            for spec in names.CONSUMERS:
                if spec.service != service:
                    continue
                await client.js.consumer_info(spec.stream, spec.name)
                sub = await client.js.pull_subscribe_bind(durable=spec.name, stream=spec.stream)
                # nats-py raises its own TimeoutError, or asyncio's when its no-wait probe is
                # answered after the deadline (a loaded machine): both are the builtin's.
                with contextlib.suppress(TimeoutError):
                    for msg in await sub.fetch(10, timeout=0.5):
                        await msg.ack_sync(timeout=2)
                await sub.unsubscribe()
            assert client.violations() == [], (service, client.errors)


async def test_ledger_writes_spend_and_publishes_ledger_events(
    provisioned_secured: StackUrls,
) -> None:
    async with connected(provisioned_secured, "ingress") as ingress:
        event = await ingress.js.publish(
            names.llm_request_subject(names.LLM_REQUEST_FAILED, None), b"{}"
        )
    async with connected(provisioned_secured, "ledger") as ledger:
        await (await ledger.js.key_value(names.KV_SPEND)).put("key-x", b'{"spend": "0.1"}')
        ack = await ledger.js.publish(names.LEDGER_SPEND_UPDATED, b"{}")
        assert ack.stream == names.STREAM_LEDGER.name
        # Dead letters: the max-deliveries advisory of its durables, and the message it names.
        await ledger.nc.subscribe(
            names.max_deliveries_advisory(names.LEDGER_SPEND), queue="ledger-dead-letters"
        )
        assert (await ledger.js.get_msg(names.STREAM_LLM.name, event.seq)).seq == event.seq
        await ledger.nc.flush()
        assert ledger.violations() == []


async def test_exporter_and_alerter_publish_their_own_subjects(
    provisioned_secured: StackUrls,
) -> None:
    async with connected(provisioned_secured, "exporter") as exporter:
        ack = await exporter.js.publish(names.EXPORT_DEAD_LETTER, b"{}")
        raw = await exporter.js.get_msg(names.STREAM_EXPORT.name, seq=ack.seq)
        assert raw.seq == ack.seq
        await exporter.js.delete_msg(names.STREAM_EXPORT.name, ack.seq)
        assert exporter.violations() == []
    async with connected(provisioned_secured, "alerter") as alerter:
        ack = await alerter.js.publish(names.alert_sent_subject("budget_alerts"), b"{}")
        assert ack.stream == names.STREAM_ALERT.name
        assert alerter.violations() == []


# --- what they must not do -----------------------------------------------------------


async def test_anonymous_clients_are_refused(provisioned_secured: StackUrls) -> None:
    with pytest.raises(NatsError, match="Authorization Violation"):
        await nats.connect(
            provisioned_secured.nats_url, allow_reconnect=False, max_reconnect_attempts=0
        )
    with pytest.raises(NatsError, match="Authorization Violation"):
        await nats.connect(
            provisioned_secured.nats_url,
            user="ingress",
            password="wrong",
            allow_reconnect=False,
            max_reconnect_attempts=0,
        )


async def test_only_a_buckets_writer_may_put_into_it(provisioned_secured: StackUrls) -> None:
    """Ingress cannot mint a key; the exporter cannot zero a spend total; the operator
    (provision) can do neither."""
    cases = [
        ("ingress", names.KV_KEYS),
        ("exporter", names.KV_SPEND),
        ("admin", names.KV_SPEND),
        ("ledger", names.KV_KEYS),
        ("alerter", names.KV_TEAMS),
        ("provision", names.KV_KEYS),
    ]
    key = f"forged-{uuid.uuid4().hex}"
    for user, bucket in cases:
        async with connected(provisioned_secured, user) as client:
            kv = await short(client).key_value(bucket)
            violation = await refused(client, kv.put(key, b'{"spend": "0"}'))
            assert f"$kv.{bucket}.{key}".lower() in violation.lower(), (user, violation)
    async with connected(provisioned_secured, "ledger") as ledger:
        kv = await ledger.js.key_value(names.KV_KEYS)
        with pytest.raises(nats.js.errors.KeyNotFoundError):
            await kv.get(key)


async def test_services_publish_only_their_own_events(provisioned_secured: StackUrls) -> None:
    forged = {
        "ingress": names.AdminSubject.KEY_CREATED.value,
        "exporter": names.llm_request_subject(names.LLM_REQUEST_COMPLETED, None),
        "alerter": names.LEDGER_SPEND_UPDATED,
        "ledger": names.llm_request_subject(names.LLM_REQUEST_FAILED, "team-a"),
        "admin": names.alert_sent_subject("x"),
        "provision": names.llm_request_subject(names.LLM_REQUEST_COMPLETED, None),
    }
    for user, subject in forged.items():
        async with connected(provisioned_secured, user) as client:
            violation = await refused(client, short(client).publish(subject, b"{}"))
            assert subject.lower() in violation.lower(), (user, violation)


async def test_a_service_cannot_pull_or_change_anothers_durable(
    provisioned_secured: StackUrls,
) -> None:
    async with connected(provisioned_secured, "ledger") as ledger:
        js = short(ledger)
        violation = await refused(
            ledger, js.consumer_info(names.STREAM_LLM.name, names.EXPORTER_LLM.name)
        )
        assert names.EXPORTER_LLM.name in violation
        sub = await js.pull_subscribe_bind(
            durable=names.EXPORTER_LLM.name, stream=names.STREAM_LLM.name
        )
        violation = await refused(ledger, sub.fetch(1, timeout=REFUSAL_TIMEOUT_S))
        assert f"consumer.msg.next.llm.{names.EXPORTER_LLM.name}" in violation.lower()
        await sub.unsubscribe()
        violation = await refused(
            ledger, js.delete_consumer(names.STREAM_LLM.name, names.EXPORTER_LLM.name)
        )
        assert "consumer.delete" in violation.lower()
    async with connected(provisioned_secured, "exporter") as exporter:
        violation = await refused(exporter, short(exporter).delete_stream(names.STREAM_LLM.name))
        assert "stream.delete" in violation.lower()


async def _violation_for(client: Client, subject: str) -> str:
    """Subscribe to `subject` and return the violation the server reports for it."""
    before = len(client.violations())
    await client.nc.subscribe(subject)
    for _ in range(40):
        if len(client.violations()) > before:
            return client.violations()[-1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"subscribing to {subject} was not refused: {client.errors}")


async def test_a_service_cannot_read_what_jetstream_delivers_to_another(
    provisioned_secured: StackUrls,
) -> None:
    """Pulled messages and replies travel on the puller's inbox; each user has its own
    prefix, and may not subscribe to the shared root or to another user's inbox."""
    async with connected(provisioned_secured, "exporter") as exporter:
        assert bytes(exporter.nc._inbox_prefix) == b"_INBOX.exporter"
        for subject in ("_INBOX.>", "_INBOX.ledger.>", "_INBOX.*.x", ">"):
            violation = (await _violation_for(exporter, subject)).lower()
            assert f'subscription to "{subject.lower()}"' in violation, violation
        # Its own inbox works: a request/reply with JetStream and a bound pull.
        await exporter.js.consumer_info(names.STREAM_LLM.name, names.EXPORTER_LLM.name)
        assert [e for e in exporter.violations() if "_inbox.exporter" in e.lower()] == []


async def test_credentials_in_the_url_pick_that_users_inbox(
    provisioned_secured: StackUrls,
) -> None:
    assert provisioned_secured.nats_passwords is not None
    password = provisioned_secured.nats_passwords["ledger"]
    host = provisioned_secured.nats_url.removeprefix("nats://")
    errors: list[str] = []

    async def record(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await connect_nats(f"nats://ledger:{password}@{host}", "test-url-user", error_cb=record)
    try:
        assert bytes(nc._inbox_prefix) == b"_INBOX.ledger"
        info = await nc.jetstream(timeout=2.0).consumer_info(
            names.STREAM_LLM.name, names.LEDGER_SPEND.name
        )
        assert info.name == names.LEDGER_SPEND.name
    finally:
        await nc.close()
    assert errors == []


# --- the files Compose and Helm give their NATS -----------------------------------------


@pytest.mark.parametrize(
    "generated", [permissions.COMPOSE_AUTH, permissions.HELM_AUTH], ids=["compose", "helm"]
)
async def test_deployment_auth_file_runs_on_a_real_nats_server(
    generated: Path, tmp_path: Path
) -> None:
    """The checked-in include (passwords from TOLLGATE_NATS_PASSWORD_<USER>) is what a
    nats-server of Compose or Helm loads: provisioning and the writers work, others don't."""
    root = Path(__file__).resolve().parents[3]
    (tmp_path / "tollgate-auth.conf").write_text((root / generated).read_text())
    port = free_port()
    conf = tmp_path / "nats.conf"
    conf.write_text(
        f'listen: "127.0.0.1:{port}"\n'
        "include tollgate-auth.conf\n"
        f'jetstream {{ store_dir: "{tmp_path / "js"}" }}\n'
    )
    passwords = {u.name: uuid.uuid4().hex for u in permissions.USERS}
    env = {u.password_env: passwords[u.name] for u in permissions.USERS}
    proc = subprocess.Popen(
        nats_argv(conf), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port, proc, "nats-server")
        stack = StackUrls(f"nats://127.0.0.1:{port}", "", "", nats_passwords=passwords)
        await provision_url(stack.nats_url, auth=stack.nats_auth("provision"))
        async with connected(stack, "admin") as admin:
            await (await admin.js.key_value(names.KV_KEYS)).put("k", b"{}")
        async with connected(stack, "ingress") as ingress:
            assert (await (await ingress.js.key_value(names.KV_KEYS)).get("k")).value == b"{}"
            kv = await short(ingress).key_value(names.KV_KEYS)
            await refused(ingress, kv.put("k", b"forged"))
    finally:
        proc.terminate()
        proc.wait(10)
