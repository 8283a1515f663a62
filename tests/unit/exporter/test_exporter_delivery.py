"""Delivery: batching, retries, dead-letters, acks after every destination settled, isolation."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from support.receivers.samples import completed
from tollgate_exporter.destinations import Destination
from tollgate_exporter.routing import Route
from tollgate_exporter.service import Dispatcher
from tollgate_exporter.settings import ExporterSettings
from tollgate_exporter.sinks.base import (
    BatchResult,
    ExportItem,
    PermanentError,
    RetryableError,
)
from tollgate_shared.events import ExportDeadLettered


class FakeMsg:
    def __init__(self, seq: int) -> None:
        self.subject = "llm.request.completed.v1._"
        self.metadata = SimpleNamespace(sequence=SimpleNamespace(stream=seq), num_delivered=1)
        self.acked = asyncio.Event()
        self.naked = False
        self.progress = 0

    async def ack(self) -> None:
        self.acked.set()

    async def nak(self, delay: float | None = None) -> None:
        self.naked = True

    async def in_progress(self) -> None:
        self.progress += 1


@dataclass
class FakeSink:
    kind: str
    failures: list[Exception] = field(default_factory=list)
    delay_s: float = 0.0
    batches: list[list[str]] = field(default_factory=list)
    reject: set[int] = field(default_factory=set)

    async def send(self, destination: Destination, items: Sequence[ExportItem]) -> BatchResult:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.failures:
            raise self.failures.pop(0)
        self.batches.append([i.event.event_id for i in items])
        return BatchResult({i: "rejected" for i in self.reject if i < len(items)})


def settings(**over: Any) -> ExporterSettings:
    base: dict[str, Any] = {
        "export_batch_size": 10,
        "export_batch_wait_s": 0.05,
        "export_retry_attempts": 3,
        "export_retry_initial_s": 0.01,
        "export_retry_max_s": 0.02,
    }
    base.update(over)
    return ExporterSettings(**base)


def dest(name: str, sink: str = "webhook") -> Destination:
    return Destination(sink, f"{sink}:{name}", f"{sink} {name}", {})  # type: ignore[arg-type]


def routes(*dests: Destination, redact: bool = False) -> tuple[Route, ...]:
    return tuple(Route(d, d.sink, redact) for d in dests)


class Harness:
    def __init__(self, sinks: dict[str, Any], fail_publish: bool = False, **s: Any) -> None:
        self.dead: list[ExportDeadLettered] = []
        self.fail_publish = fail_publish
        self.dispatcher = Dispatcher(settings(**s), sinks, self.publish, ack_wait_s=30)

    async def publish(self, record: ExportDeadLettered) -> None:
        if self.fail_publish:
            raise ConnectionError("nats down")
        self.dead.append(record)


async def test_batches_and_acks_once_accepted() -> None:
    sink = FakeSink("webhook")
    h = Harness({"webhook": sink})
    msgs = [FakeMsg(i) for i in range(5)]
    events = [completed() for _ in msgs]
    for m, e in zip(msgs, events, strict=True):
        await h.dispatcher.submit(m, e, routes(dest("a")))  # type: ignore[arg-type]
    await asyncio.wait_for(asyncio.gather(*(m.acked.wait() for m in msgs)), 2)
    assert sink.batches == [[e.event_id for e in events]]  # one batch of five
    assert h.dispatcher.pending == 0
    await h.dispatcher.stop()


async def test_no_destination_acks_at_once() -> None:
    h = Harness({})
    m = FakeMsg(1)
    await h.dispatcher.submit(m, completed(), ())  # type: ignore[arg-type]
    assert m.acked.is_set()


async def test_retries_then_delivers() -> None:
    sink = FakeSink("webhook", failures=[RetryableError("503", 503), RetryableError("timeout")])
    h = Harness({"webhook": sink})
    m = FakeMsg(1)
    d = dest("a")
    await h.dispatcher.submit(m, completed(), routes(d))  # type: ignore[arg-type]
    await asyncio.wait_for(m.acked.wait(), 2)
    assert len(sink.batches) == 1
    assert h.dead == []
    health = h.dispatcher.health[d.key]
    assert health.exported == 1
    assert health.consecutive_failures == 0
    assert health.problem(health.last_success or 0, 60) is None
    await h.dispatcher.stop()


async def test_dead_letters_after_last_attempt_then_acks() -> None:
    sink = FakeSink("webhook", failures=[RetryableError("503", 503)] * 5)
    h = Harness({"webhook": sink})
    m, ev = FakeMsg(7), completed(team_id="t1")
    d = dest("a")
    await h.dispatcher.submit(m, ev, routes(d))  # type: ignore[arg-type]
    await asyncio.wait_for(m.acked.wait(), 2)
    (record,) = h.dead
    assert record.source_event_id == ev.event_id
    assert record.attempts == 3
    assert record.source_stream_seq == 7
    assert record.team_id == "t1"
    assert record.status_code == 503
    assert record.destination == "webhook a"
    health = h.dispatcher.health[d.key]
    assert health.dead_lettered == 1
    assert "503" in (health.problem(health.last_dead_letter or 0, 60) or "")
    await h.dispatcher.stop()


async def test_permanent_error_is_not_retried() -> None:
    sink = FakeSink("webhook", failures=[PermanentError("401", 401), RetryableError("x")])
    h = Harness({"webhook": sink})
    m = FakeMsg(1)
    await h.dispatcher.submit(m, completed(), routes(dest("a")))  # type: ignore[arg-type]
    await asyncio.wait_for(m.acked.wait(), 2)
    assert len(h.dead) == 1
    assert h.dead[0].attempts == 1
    assert len(sink.failures) == 1
    await h.dispatcher.stop()


async def test_rejected_items_are_dead_lettered_alone() -> None:
    sink = FakeSink("webhook", reject={0})
    h = Harness({"webhook": sink})
    msgs = [FakeMsg(1), FakeMsg(2)]
    evs = [completed(), completed()]
    for m, e in zip(msgs, evs, strict=True):
        await h.dispatcher.submit(m, e, routes(dest("a")))  # type: ignore[arg-type]
    await asyncio.wait_for(asyncio.gather(*(m.acked.wait() for m in msgs)), 2)
    assert [d.source_event_id for d in h.dead] == [evs[0].event_id]


async def test_slow_failing_destination_does_not_delay_another() -> None:
    slow = FakeSink("langfuse", failures=[RetryableError("503")] * 100, delay_s=0.2)
    fast = FakeSink("webhook")
    h = Harness(
        {"langfuse": slow, "webhook": fast},
        export_retry_attempts=100,
        export_retry_initial_s=0.2,
        export_retry_max_s=0.2,
    )
    both = FakeMsg(1)
    only_fast = FakeMsg(2)
    await h.dispatcher.submit(both, completed(), routes(dest("a", "langfuse"), dest("b")))  # type: ignore[arg-type]
    await h.dispatcher.submit(only_fast, completed(), routes(dest("b")))  # type: ignore[arg-type]
    await asyncio.wait_for(only_fast.acked.wait(), 1)
    assert len(fast.batches) == 1
    assert len(fast.batches[0]) == 2
    assert not both.acked.is_set()  # still waiting on the slow one
    await h.dispatcher.stop()
    assert both.naked  # handed back to JetStream on shutdown


async def test_dead_letter_publish_failure_redelivers() -> None:
    sink = FakeSink("webhook", failures=[PermanentError("400", 400)])
    h = Harness({"webhook": sink}, fail_publish=True)
    m = FakeMsg(1)
    await h.dispatcher.submit(m, completed(), routes(dest("a")))  # type: ignore[arg-type]
    for _ in range(100):
        if m.naked:
            break
        await asyncio.sleep(0.01)
    assert m.naked
    assert not m.acked.is_set()
    await h.dispatcher.stop()


async def test_redelivery_while_in_flight_is_not_queued_twice() -> None:
    sink = FakeSink("webhook", delay_s=0.1)
    h = Harness({"webhook": sink})
    ev = completed()
    first, again = FakeMsg(1), FakeMsg(1)
    await h.dispatcher.submit(first, ev, routes(dest("a")))  # type: ignore[arg-type]
    await h.dispatcher.submit(again, ev, routes(dest("a")))  # type: ignore[arg-type]
    await asyncio.wait_for(again.acked.wait(), 2)
    assert sum(len(b) for b in sink.batches) == 1
    await h.dispatcher.stop()


async def test_redaction_happens_before_the_sink() -> None:
    sink = FakeSink("webhook")
    seen: list[ExportItem] = []
    original = sink.send

    async def spy(d: Destination, items: Sequence[ExportItem]) -> BatchResult:
        seen.extend(items)
        return await original(d, items)

    sink.send = spy  # type: ignore[method-assign]
    h = Harness({"webhook": sink})
    m = FakeMsg(1)
    await h.dispatcher.submit(
        m,
        completed(),
        (
            Route(dest("a"), "webhook", True),  # type: ignore[arg-type]
            Route(dest("b"), "webhook", False),
        ),
    )
    await asyncio.wait_for(m.acked.wait(), 2)
    by_redact = {i.redacted: i.event for i in seen}
    assert by_redact[True].messages is None
    assert by_redact[False].messages is not None
    await h.dispatcher.stop()


async def test_full_queue_dead_letters_instead_of_blocking() -> None:
    sink = FakeSink("webhook", delay_s=0.5)
    h = Harness({"webhook": sink}, export_max_queue=1, export_batch_size=1)
    msgs = [FakeMsg(i) for i in range(4)]
    for m in msgs:
        await h.dispatcher.submit(m, completed(), routes(dest("a")))  # type: ignore[arg-type]
    assert any("full" in d.error for d in h.dead)
    await h.dispatcher.stop()
