"""Consumer CPU per message taken off a durable: nats-py's `fetch` against
`tollgate_shared.consuming.pull` (what the ledger, exporter and alerter consume with), the
same backlog of 800-byte messages in batches of 500, interleaved rounds, the process's CPU
clock. Acks are left out (the consumer acks nothing) so only taking messages is timed.
`python -m tollgate_bench.pull [--messages N] [--rounds R]`; NATS from TOLLGATE_NATS_URL or
an embedded one."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nats
from nats.js import JetStreamContext, api

from tollgate_bench.report import interleaved, medians_against_first
from tollgate_devstack.embedded import EmbeddedStack
from tollgate_shared.consuming import pull

BATCH = 500
PAYLOAD = b"x" * 800


async def with_fetch(psub: Any) -> int:
    return len(await psub.fetch(BATCH, timeout=2))


async def with_pull(psub: Any) -> int:
    return len(await pull(psub, BATCH, 2))


async def one_leg(js: JetStreamContext, take: Callable[[Any], Awaitable[int]], count: int) -> float:
    """CPU seconds per message to take `count` published messages with `take`."""
    stream = f"PULLBENCH_{uuid.uuid4().hex[:8].upper()}"
    subject = f"pullbench.{stream.lower()}"
    await js.add_stream(api.StreamConfig(name=stream, subjects=[subject]))
    try:
        await js.add_consumer(
            stream, api.ConsumerConfig(durable_name="bench", ack_policy=api.AckPolicy.NONE)
        )
        for start in range(0, count, 1000):
            n = min(1000, count - start)
            await asyncio.gather(*(js.publish(subject, PAYLOAD) for _ in range(n)))
        psub = await js.pull_subscribe_bind(durable="bench", stream=stream)
        got = 0
        began = time.process_time()
        while got < count:
            got += await take(psub)
        spent = time.process_time() - began
        await psub.unsubscribe()
        return spent / count
    finally:
        await js.delete_stream(stream)


async def main(messages: int, rounds: int, nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        seen = await interleaved(
            {
                "nats-py fetch": lambda: one_leg(js, with_fetch, messages),
                "consuming.pull": lambda: one_leg(js, with_pull, messages),
            },
            rounds,
        )
    finally:
        await nc.close()
    per_msg = {name: [v * 1e6 for v in values] for name, values in seen.items()}
    print(f"{messages} messages x {rounds} rounds, batches of {BATCH}: consumer CPU per message")
    print("\n".join(medians_against_first(per_msg, "us", 1)))


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tollgate_bench.pull")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    given = os.environ.get("TOLLGATE_NATS_URL")
    with contextlib.ExitStack() as stack:
        if given is None:
            embedded = EmbeddedStack(Path(tempfile.mkdtemp(prefix="tollgate-pull-bench-")))
            stack.callback(embedded.stop)
            given = embedded.start_nats()
        asyncio.run(main(args.messages, args.rounds, given))


if __name__ == "__main__":
    cli()
