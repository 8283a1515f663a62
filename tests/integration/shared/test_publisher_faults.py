"""The publisher never loses a costable event: unserialisable, oversized and undeliverable
events, a failing publishing task, and a spool holding an event that can never be published.

Real NATS with JetStream, started per test with a small `max_payload` (64 KiB) so that
oversized events are cheap to make.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS

from support import builders
from support.events import wait_for_events
from tollgate_devstack.embedded import free_port, nats_server_binary, wait_for_port
from tollgate_shared.events import AdminChanged, Event, LlmRequestCompleted, decode
from tollgate_shared.names import AdminSubject
from tollgate_shared.provision import provision_url
from tollgate_shared.publishing import EventPublisher, Item, hydrate_content

MAX_PAYLOAD = 64 * 1024


class NatsServer:
    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.conf = root / "nats.conf"
        self.conf.write_text(
            f'listen: "127.0.0.1:{self.port}"\n'
            f"max_payload: {MAX_PAYLOAD}\n"
            f'jetstream {{ store_dir: "{root / "js"}" }}\n'
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [nats_server_binary(), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, self.proc, "nats-server")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    srv = NatsServer(tmp_path)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
async def client(server: NatsServer) -> AsyncIterator[NATS]:
    await provision_url(server.url)
    nc = await nats.connect(server.url)
    try:
        yield nc
    finally:
        await nc.close()


async def _publisher(server: NatsServer, tmp_path: Path, cls: type = EventPublisher) -> Any:
    pub = cls(server.url, tmp_path / "spool.sqlite3", "tollgate-test", ack_timeout=2.0)
    await pub.start()
    for _ in range(100):
        if pub.connected:
            break
        await asyncio.sleep(0.05)
    return pub


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": True}
    for _ in range(depth):
        value = {"n": value}
    return value


def _completed(tag: str, **kw: Any) -> LlmRequestCompleted:
    return builders.completed(tags=[tag], spend=Decimal("0.25"), **kw)


async def _arrived(nc: NATS, tag: str, count: int = 1) -> list[dict[str, Any]]:
    got = await wait_for_events(
        nc.jetstream(), "llm.request.completed.v1.>", {"tags": [tag]}, count=count, timeout=10
    )
    assert len(got) == count, f"{len(got)} of {count} events with tag {tag} arrived"
    return [data for _, data in got]


async def test_an_unserialisable_event_is_published_without_content_and_still_costs(
    server: NatsServer, client: NATS, tmp_path: Path
) -> None:
    # 400 levels: pydantic refuses to serialise it (the finding: the task used to die here).
    event = _completed("deep", metadata=_nested(400))
    pub = await _publisher(server, tmp_path)
    try:
        pub.emit(event)
        pub.emit(_completed("after-deep"))
        assert await pub.flush(10)
        (data,) = await _arrived(client, "deep")
        await _arrived(client, "after-deep")
    finally:
        await pub.close()
    assert data["spend"] == "0.25"
    assert data["request_id"] == event.request_id
    assert "not serialisable" in data["metadata"]["tollgate_dropped"]
    assert data["messages"] is None
    assert pub.running


async def test_content_too_large_for_a_message_is_offloaded_and_read_back(
    server: NatsServer, client: NATS, tmp_path: Path
) -> None:
    big = "x" * (MAX_PAYLOAD * 2)
    event = _completed("big-content", messages=[{"role": "user", "content": big}])
    pub = await _publisher(server, tmp_path)
    try:
        pub.emit(event)
        assert await pub.flush(10)
        (data,) = await _arrived(client, "big-content")
    finally:
        await pub.close()
    assert data["content_ref"] == event.event_id
    lean = decode("llm.request.completed.v1._", _json(data), LlmRequestCompleted)
    full = await hydrate_content(client.jetstream(), lean)
    assert full.messages == [{"role": "user", "content": big}]


async def test_metadata_too_large_even_without_content_is_stripped_not_lost(
    server: NatsServer, client: NATS, tmp_path: Path
) -> None:
    event = _completed("big-metadata", metadata={"blob": "y" * (MAX_PAYLOAD * 2)})
    pub = await _publisher(server, tmp_path)
    try:
        pub.emit(event)
        assert await pub.flush(10)
        (data,) = await _arrived(client, "big-metadata")
    finally:
        await pub.close()
    assert data["spend"] == "0.25"
    assert "over the" in data["metadata"]["tollgate_dropped"]


async def test_a_failing_publishing_task_restarts_and_keeps_its_batch(
    server: NatsServer, client: NATS, tmp_path: Path
) -> None:
    class FailsOnce(EventPublisher):
        failed = False

        async def _publish_in_order(self, items: list[Item]) -> None:
            if not self.failed:
                self.failed = True
                raise RuntimeError("injected failure")
            await super()._publish_in_order(items)

    pub = await _publisher(server, tmp_path, FailsOnce)
    try:
        for i in range(5):
            pub.emit(_completed("restart", request_id=f"restart-{i}"))
        await _arrived(client, "restart", count=5)
        state = pub.state()
    finally:
        await pub.close()
    assert state["restarts"] == 1
    assert "injected failure" in str(state["last_error"])
    assert state["running"] is True


async def test_check_fails_while_the_task_is_down(server: NatsServer, tmp_path: Path) -> None:
    class AlwaysFails(EventPublisher):
        async def _publish_in_order(self, items: list[Item]) -> None:
            raise RuntimeError("broken")

    pub = await _publisher(server, tmp_path, AlwaysFails)
    try:
        pub.emit(_completed("down"))
        for _ in range(100):
            if not pub.running:
                break
            await asyncio.sleep(0.02)
        with pytest.raises(RuntimeError, match="publisher is down"):
            await pub.check()
    finally:
        await pub.close()


async def test_an_oversized_spooled_event_never_wedges_the_spool(
    server: NatsServer, client: NATS, tmp_path: Path
) -> None:
    """While NATS is down: an event that can never be published (a management change larger
    than a message), one whose content must be offloaded, then ordinary ones. Replay
    dead-letters the first, offloads the second and publishes everything after them."""
    server.stop()
    pub = EventPublisher(server.url, tmp_path / "spool.sqlite3", "tollgate-test", ack_timeout=1.0)
    await pub.start()
    try:
        huge_change = builders.admin_change(
            AdminSubject.KEY_UPDATED, updated_values={"blob": "z" * (MAX_PAYLOAD * 2)}
        )
        pub.emit(huge_change)
        pub.emit(
            _completed("spooled-big", messages=[{"role": "user", "content": "q" * MAX_PAYLOAD * 2}])
        )
        for i in range(3):
            pub.emit(_completed("spooled-after", request_id=f"after-{i}"))
        for _ in range(100):
            if pub.spooled == 5:
                break
            await asyncio.sleep(0.05)
        assert pub.spooled == 5
        server.start()
        await _arrived(client, "spooled-big")
        await _arrived(client, "spooled-after", count=3)
        assert await pub.flush(10)
        dead = pub.dead_letters()
    finally:
        await pub.close()
    assert [d.msg_id for d in dead] == [huge_change.event_id]
    assert dead[0].event_type == AdminChanged.event_type
    assert "limit" in dead[0].reason
    assert pub.spooled == 0


def _json(data: dict[str, Any]) -> bytes:
    import json

    return json.dumps(data).encode()


def _unused(_: Event) -> None:  # keeps the import for type checkers honest
    return None


class _Frozen:
    """The NATS server stopped with SIGSTOP: connections stay open, nothing is acked."""

    def __init__(self, server: NatsServer) -> None:
        assert server.proc is not None
        self.pid = server.proc.pid

    def __enter__(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def __exit__(self, *_: object) -> None:
        os.kill(self.pid, signal.SIGCONT)


def _spool_rows(path: Path) -> int:
    """What a SIGKILL of the publisher now would leave: the rows committed to its spool."""
    db = sqlite3.connect(str(path))
    try:
        return int(db.execute("SELECT count(*) FROM spool").fetchone()[0])
    finally:
        db.close()


async def test_events_held_in_memory_are_written_ahead_within_the_bound_and_sent_once(
    server: NatsServer, client: NATS, tmp_path: Path
) -> None:
    spool = tmp_path / "spool.sqlite3"
    pub = EventPublisher(server.url, spool, "tollgate-test", ack_timeout=2.0, write_ahead_ms=100)
    await pub.start()
    try:
        for _ in range(100):
            if pub.connected:
                break
            await asyncio.sleep(0.05)
        with _Frozen(server):
            for i in range(10):  # one batch in flight, never acked while frozen
                pub.emit(_completed("ahead", request_id=f"ahead-{i}"))
            await asyncio.sleep(0.1)
            pub.emit(_completed("ahead", request_id="ahead-queued"))  # queued behind it
            # write_ahead_ms * 1.25, and some room for a loaded machine
            await asyncio.sleep(0.4)
            assert _spool_rows(spool) == 11
        await _arrived(client, "ahead", count=11)
        assert await pub.flush(10)
        assert pub.spooled == 0
    finally:
        await pub.close()
    # Published once each, whether the copy on disk or the one in flight got there first.
    again = await wait_for_events(
        client.jetstream(), "llm.request.completed.v1.>", {"tags": ["ahead"]}, count=12, timeout=1
    )
    assert sorted(ev["request_id"] for _, ev in again) == sorted(
        [f"ahead-{i}" for i in range(10)] + ["ahead-queued"]
    )


async def test_a_flush_timeout_on_close_spools_the_batch_in_flight(
    server: NatsServer, client: NATS, tmp_path: Path
) -> None:
    spool = tmp_path / "spool.sqlite3"
    pub = EventPublisher(server.url, spool, "tollgate-test", ack_timeout=5.0, write_ahead_ms=None)
    await pub.start()
    for _ in range(100):
        if pub.connected:
            break
        await asyncio.sleep(0.05)
    with _Frozen(server):
        for i in range(5):
            pub.emit(_completed("at-close", request_id=f"at-close-{i}"))
        await asyncio.sleep(0.1)  # the batch is in flight, waiting for acks
        await asyncio.wait_for(pub.close(timeout=0.5), 5)  # a frozen server never blocks stop
        assert _spool_rows(spool) == 5
    again = await _publisher(server, tmp_path)  # the next start replays them
    try:
        await _arrived(client, "at-close", count=5)
    finally:
        await again.close()
