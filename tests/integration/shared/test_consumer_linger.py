"""A pull consumer's linger (real JetStream): messages trickling in at 100/s are handled in a
few full batches instead of one fetch and one ack write per message, each exactly once and
in order; without a linger the same trickle comes in batches of one or two."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from tollgate_shared.consuming import run_consumer
from tollgate_shared.names import ConsumerSpec


async def _trickle(js: JetStreamContext, linger_s: float, count: int = 40) -> list[list[int]]:
    stream = f"LINGER_{uuid.uuid4().hex[:8].upper()}"
    subject = f"linger.{stream.lower()}"
    await js.add_stream(api.StreamConfig(name=stream, subjects=[subject]))
    spec = ConsumerSpec(name="linger-test", stream=stream, filter_subjects=(subject,))
    await js.add_consumer(
        stream,
        api.ConsumerConfig(durable_name=spec.name, ack_policy=api.AckPolicy.EXPLICIT),
    )
    batches: list[list[int]] = []
    done = asyncio.Event()

    async def handle(msgs: list[Msg]) -> None:
        batches.append([int(m.data) for m in msgs])
        for m in msgs:
            await m.ack()
        if sum(len(b) for b in batches) >= count:
            done.set()

    task = asyncio.create_task(
        run_consumer(js, spec, handle, batch_size=500, fetch_timeout=0.5, linger_s=linger_s)
    )
    try:
        await asyncio.sleep(0.3)  # bound and waiting
        for i in range(count):
            await js.publish(subject, str(i).encode())
            await asyncio.sleep(0.01)
        await asyncio.wait_for(done.wait(), 10)
        await asyncio.sleep(0.3)  # nothing comes twice
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await js.delete_stream(stream)
    return batches


async def test_a_lingering_consumer_handles_a_trickle_in_few_batches(js: JetStreamContext) -> None:
    lingering = await _trickle(js, linger_s=0.1)
    assert [n for b in lingering for n in b] == list(range(40))
    # 40 messages over ~0.45 s with a 0.1 s pause after each short fetch: a handful.
    assert len(lingering) <= 8, lingering

    eager = await _trickle(js, linger_s=0.0)
    assert [n for b in eager for n in b] == list(range(40))
    assert len(eager) > 2 * len(lingering), (eager, lingering)
