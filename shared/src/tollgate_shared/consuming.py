"""Runs a durable pull consumer in batches; the handler decides ack, nak or term per message."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from prometheus_client import Counter, Gauge

from tollgate_shared.names import ConsumerSpec

log = logging.getLogger(__name__)

MESSAGES_TERMINATED = Counter(
    "tollgate_messages_terminated_total",
    "Poison messages terminated (never retried)",
    ["consumer"],
)
CONSUMER_PENDING = Gauge(
    "tollgate_consumer_pending", "Messages not yet delivered to the consumer", ["consumer"]
)
CONSUMER_ACK_PENDING = Gauge(
    "tollgate_consumer_ack_pending", "Messages delivered and not yet acked", ["consumer"]
)

BatchHandler = Callable[[list[Msg]], Awaitable[None]]
Prepared = TypeVar("Prepared")


def redelivery_delay(spec: ConsumerSpec, msg: Msg) -> float:
    """The consumer's backoff for this delivery attempt."""
    attempt = max(1, msg.metadata.num_delivered)
    return spec.backoff_s[min(attempt - 1, len(spec.backoff_s) - 1)]


async def terminate(spec: ConsumerSpec, msg: Msg, reason: str) -> None:
    MESSAGES_TERMINATED.labels(spec.name).inc()
    log.warning(
        "terminating message %s on %s: %s", msg.metadata.sequence.stream, msg.subject, reason
    )
    await msg.term()


async def bind(js: JetStreamContext, spec: ConsumerSpec, wait_s: float = 60.0) -> object:
    """Bind to a provisioned durable, waiting for provisioning if it is not there yet."""
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        try:
            return await js.pull_subscribe_bind(durable=spec.name, stream=spec.stream)
        except NotFoundError:
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(
                    f"consumer {spec.stream}/{spec.name} does not exist: run `just provision`"
                ) from None
            log.info("waiting for consumer %s to be provisioned", spec.name)
            await asyncio.sleep(1)


async def run_consumer(
    js: JetStreamContext,
    spec: ConsumerSpec,
    handle: BatchHandler,
    *,
    batch_size: int = 500,
    fetch_timeout: float = 0.5,
) -> None:
    """Fetch batches forever and hand each to `handle`, which acks what it committed.

    The next batch is fetched while `handle` works on the current one, so a
    consumer waiting on its database is not also waiting on the network. Batches
    are still handled one at a time, in order. A batch fetched but not handled
    when the consumer stops is nak'ed, so it is redelivered at once.
    """
    async with _pulling(js, spec, batch_size, fetch_timeout) as batches:
        while True:
            msgs = await batches.next()
            if msgs:
                await handle(msgs)


async def run_pipelined_consumer(
    js: JetStreamContext,
    spec: ConsumerSpec,
    prepare: Callable[[list[Msg]], Awaitable[Prepared]],
    commit: Callable[[Prepared], Coroutine[object, object, None]],
    *,
    batch_size: int = 500,
    fetch_timeout: float = 0.5,
    stop_timeout: float = 10.0,
) -> None:
    """`run_consumer` in two stages: a batch is prepared while the one before it commits.

    `prepare` is the consumer's own work (decoding, building rows; it may term or
    nak messages), `commit` its database transaction and the acks after it. On one
    core, decoding the next batch while the database writes the last one keeps both
    busy. Commits still run one at a time, in fetch order, and a commit is never
    cancelled half-way: on stop the one in flight is awaited (it acks what it
    committed), and batches fetched or prepared but not committed are nak'ed.
    """
    committing: asyncio.Task[None] | None = None
    uncommitted: list[Msg] = []  # prepared, waiting for the commit before it
    async with _pulling(js, spec, batch_size, fetch_timeout) as batches:
        try:
            while True:
                msgs = await batches.next()
                if not msgs:
                    continue
                uncommitted = msgs
                work = await prepare(msgs)
                if committing is not None:
                    # Shielded: a stop while waiting here must not cancel the transaction.
                    await asyncio.shield(committing)
                committing = asyncio.create_task(commit(work))
                uncommitted = []
        finally:
            if committing is not None and not committing.done():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(committing), stop_timeout)
            for msg in uncommitted:
                with contextlib.suppress(Exception):
                    await msg.nak()


class _Batches:
    """Pull batches of a bound consumer, always fetching one ahead of the caller."""

    def __init__(self, psub: Any, spec: ConsumerSpec, batch_size: int, timeout: float) -> None:
        self._psub = psub
        self._spec = spec
        self._batch_size = batch_size
        self._timeout = timeout
        self._task = asyncio.current_task()
        self._ahead = asyncio.create_task(self._fetch())

    async def next(self) -> list[Msg]:
        # A cancellation that raced with a finishing fetch can be swallowed inside
        # nats-py's wait_for; honour it here so a stopping service never hangs.
        if self._task is not None and self._task.cancelling():
            raise asyncio.CancelledError
        msgs = await self._ahead
        self._ahead = asyncio.create_task(self._fetch())
        return msgs

    async def _fetch(self) -> list[Msg]:
        try:
            msgs: list[Msg] = await self._psub.fetch(self._batch_size, timeout=self._timeout)
        except TimeoutError:
            return []
        except Exception as exc:  # connection blips: the client reconnects
            log.warning("fetch on %s failed: %s", self._spec.name, exc)
            await asyncio.sleep(0.5)
            return []
        return msgs

    async def close(self) -> None:
        """Nak a batch fetched but never handed out, so it is redelivered at once."""
        await _return_unhandled(self._ahead)


@contextlib.asynccontextmanager
async def _pulling(
    js: JetStreamContext, spec: ConsumerSpec, batch_size: int, fetch_timeout: float
) -> AsyncIterator[_Batches]:
    """Bind the consumer, watch its lag, and fetch ahead; undo all of it on the way out."""
    psub = await bind(js, spec)
    lag_task = asyncio.create_task(_watch_lag(js, spec))
    batches = _Batches(psub, spec, batch_size, fetch_timeout)
    try:
        yield batches
    finally:
        lag_task.cancel()
        await batches.close()
        # Without this a stopping process waits out its drain timeout on the pull subscription.
        with contextlib.suppress(Exception):
            await psub.unsubscribe()  # type: ignore[attr-defined]


async def _return_unhandled(ahead: asyncio.Task[list[Msg]]) -> None:
    if not ahead.done():
        ahead.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await ahead
        return
    if ahead.cancelled() or ahead.exception() is not None:
        return
    for msg in ahead.result():
        with contextlib.suppress(Exception):
            await msg.nak()


async def _watch_lag(js: JetStreamContext, spec: ConsumerSpec) -> None:
    while True:
        try:
            info = await js.consumer_info(spec.stream, spec.name)
            CONSUMER_PENDING.labels(spec.name).set(info.num_pending or 0)
            CONSUMER_ACK_PENDING.labels(spec.name).set(info.num_ack_pending or 0)
        except Exception:
            log.debug("consumer_info for %s failed", spec.name, exc_info=True)
        await asyncio.sleep(5)
