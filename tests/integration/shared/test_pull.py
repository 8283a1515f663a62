"""`consuming.pull` against real JetStream: batches in order and exactly once, a wait that
ends with the first arrivals, late answers taken by the next call, a timeout when nothing
comes, and a refused request raised (not mistaken for an empty consumer)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.js import JetStreamContext, api

from tollgate_shared.consuming import PullRefusedError, pull, run_consumer
from tollgate_shared.names import ConsumerSpec


@pytest.fixture
async def consumer(js: JetStreamContext) -> AsyncIterator[tuple[str, str, Any]]:
    stream = f"PULL_{uuid.uuid4().hex[:8].upper()}"
    subject = f"pull.{stream.lower()}"
    await js.add_stream(api.StreamConfig(name=stream, subjects=[subject]))
    await js.add_consumer(
        stream,
        api.ConsumerConfig(
            durable_name="pull-test", ack_policy=api.AckPolicy.EXPLICIT, ack_wait=30
        ),
    )
    psub = await js.pull_subscribe_bind(durable="pull-test", stream=stream)
    try:
        yield stream, subject, psub
    finally:
        await psub.unsubscribe()
        await js.delete_stream(stream)


async def _publish(js: JetStreamContext, subject: str, numbers: range) -> None:
    await asyncio.gather(*(js.publish(subject, str(i).encode()) for i in numbers))


async def test_a_backlog_comes_in_full_batches_in_order_then_a_timeout(
    js: JetStreamContext, consumer: tuple[str, str, Any]
) -> None:
    _, subject, psub = consumer
    await _publish(js, subject, range(1200))
    got: list[list[int]] = []
    while sum(len(b) for b in got) < 1200:
        msgs = await pull(psub, 500, 2.0)
        got.append([int(m.data) for m in msgs])
        for m in msgs:
            await m.ack()
    assert [n for b in got for n in b] == list(range(1200))
    assert max(len(b) for b in got) == 500
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await pull(psub, 500, 0.3)
    assert 0.25 < time.monotonic() - started < 1.5


async def test_a_waiting_pull_returns_with_the_first_arrival_and_late_ones_come_next(
    js: JetStreamContext, consumer: tuple[str, str, Any]
) -> None:
    _, subject, psub = consumer

    async def later() -> None:
        await asyncio.sleep(0.2)
        await js.publish(subject, b"0")

    task = asyncio.create_task(later())
    started = time.monotonic()
    first = await pull(psub, 100, 5.0)
    waited = time.monotonic() - started
    await task
    assert [int(m.data) for m in first] == [0]
    assert waited < 2.0, waited  # the first arrival ends the wait, not the 5 s timeout
    # The waiting request is still open on the server for 99 more: what is published now is
    # delivered to it, and the next call takes it off the queue.
    await _publish(js, subject, range(1, 6))
    await asyncio.sleep(0.2)
    second = await pull(psub, 100, 5.0)
    seen = [int(m.data) for m in first + second]
    while len(seen) < 6:
        seen += [int(m.data) for m in await pull(psub, 100, 1.0)]
    assert sorted(seen) == list(range(6))
    assert len(seen) == 6
    for m in first + second:
        await m.ack()


async def test_a_refused_pull_is_raised(
    js: JetStreamContext, consumer: tuple[str, str, Any]
) -> None:
    stream, _, psub = consumer

    async def delete_soon() -> None:
        await asyncio.sleep(0.3)
        await js.delete_consumer(stream, "pull-test")

    task = asyncio.create_task(delete_soon())
    # Bad input to the server: the consumer disappears under a waiting pull request.
    with pytest.raises(PullRefusedError, match="409"):
        await pull(psub, 10, 5.0)
    await task


async def test_a_stopped_consumer_holds_nothing_so_another_takes_over_at_once(
    js: JetStreamContext, consumer: tuple[str, str, Any]
) -> None:
    stream, subject, _ = consumer
    await _publish(js, subject, range(2000))
    handled: list[int] = []

    async def handle(msgs: list[Any]) -> None:
        handled.extend(int(m.data) for m in msgs)
        for m in msgs:
            await m.ack()
        await asyncio.sleep(0.05)  # a consumer busy with its batch while the next one lands

    spec = ConsumerSpec(name="pull-test", stream=stream, filter_subjects=(subject,))
    for _ in range(5):  # stopped at a few different moments of a batch
        task = asyncio.create_task(run_consumer(js, spec, handle, batch_size=200))
        await asyncio.sleep(0.12)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    # What a stopping runner had fetched ahead, or had delivered and not yet taken off the
    # queue, it nak'ed: the next runner gets all of it at once, not after ack_wait (30 s).
    started = time.monotonic()
    task = asyncio.create_task(run_consumer(js, spec, handle, batch_size=200))
    try:
        while len(set(handled)) < 2000:
            assert time.monotonic() - started < 10, f"{len(set(handled))} of 2000 handled"
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert len(handled) == 2000  # each once: what was acked is never redelivered
