"""Runs a durable pull consumer in batches; the handler decides ack, nak or term per message.

A `CircuitBreaker` pauses a consumer while a dependency its handler needs (a database)
is down: the runner stops fetching, the messages it holds are kept alive with
in-progress acks (no delivery is spent), and a probe decides when to go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
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

CONSUMER_PAUSED = Gauge(
    "tollgate_consumer_paused",
    "1 while a consumer is paused because a dependency it writes to is down",
    ["breaker"],
)
CONSUMER_PAUSES = Counter(
    "tollgate_consumer_pauses_total",
    "Times a consumer paused for a dependency outage",
    ["breaker"],
)

BatchHandler = Callable[[list[Msg]], Awaitable[None]]
Probe = Callable[[], Awaitable[bool]]


class CircuitBreaker:
    """Pauses consumers while a dependency is down, instead of spending their deliveries.

    The handler calls `check` when a write failed in a way that may be the dependency's
    fault: the probe runs at once, and if the dependency is down the breaker opens.
    While open, every runner sharing it stops fetching and keeps the messages it holds
    alive (`in_progress`), so neither `ack_wait` nor `max_deliver` runs out; the
    handler waits in `closed()` and retries the same batch once the probe succeeds.
    Probes back off along `probe_every_s`, repeating its last step.
    """

    def __init__(
        self,
        name: str,
        probe: Probe,
        *,
        probe_every_s: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0),
        probe_timeout_s: float = 5.0,
    ) -> None:
        self.name = name
        self._probe = probe
        self._probe_every = probe_every_s
        self._probe_timeout = probe_timeout_s
        self._closed = asyncio.Event()
        self._closed.set()
        self._prober: asyncio.Task[None] | None = None
        self.opened_at: float | None = None
        self.last_error = ""

    @property
    def is_open(self) -> bool:
        return not self._closed.is_set()

    async def probe(self) -> bool:
        """Whether the dependency answers now (a probe that raises or hangs says no)."""
        try:
            return await asyncio.wait_for(self._probe(), self._probe_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            return False

    async def check(self, error: BaseException | str = "") -> bool:
        """After a failed write: probe, and open if the dependency is down. True if open."""
        if self.is_open:
            return True
        if await self.probe():
            return False
        self.trip(error)
        return True

    def trip(self, error: BaseException | str = "") -> None:
        """Open the breaker (idempotent) and start probing until the dependency is back."""
        if error:
            self.last_error = str(error) or type(error).__name__
        if self.is_open:
            return
        self._closed.clear()
        self.opened_at = time.monotonic()
        CONSUMER_PAUSED.labels(self.name).set(1)
        CONSUMER_PAUSES.labels(self.name).inc()
        log.error("%s is down (%s): consumers paused, messages held", self.name, self.last_error)
        self._prober = asyncio.create_task(self._probe_until_back(), name=f"probe-{self.name}")

    async def closed(self) -> None:
        """Return when the breaker is closed (at once when it is)."""
        await self._closed.wait()

    async def _probe_until_back(self) -> None:
        attempt = 0
        while True:
            await asyncio.sleep(self._probe_every[min(attempt, len(self._probe_every) - 1)])
            attempt += 1
            if await self.probe():
                break
            log.warning("%s still down after %d probes: %s", self.name, attempt, self.last_error)
        paused = time.monotonic() - (self.opened_at or time.monotonic())
        log.warning("%s is back after %.1f s: consumers resume", self.name, paused)
        self.opened_at = None
        CONSUMER_PAUSED.labels(self.name).set(0)
        self._closed.set()

    async def stop(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._prober


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
    breaker: CircuitBreaker | None = None,
    linger_s: float = 0.0,
) -> None:
    """Fetch batches forever and hand each to `handle`, which acks what it committed.

    The next batch is fetched while `handle` works on the current one, so a
    consumer waiting on its database is not also waiting on the network. Batches
    are still handled one at a time, in order. A batch fetched but not handled
    when the consumer stops is nak'ed, so it is redelivered at once. With a `breaker`,
    nothing is fetched while it is open and what is held is kept alive. With `linger_s`,
    a fetch that came back short is followed by that pause, so the next batch carries
    what arrived meanwhile: the per-fetch and per-ack writes are paid once per batch
    instead of once per message or two, for at most `linger_s` more latency.
    """
    async with _pulling(js, spec, batch_size, fetch_timeout, breaker, linger_s) as batches:
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
    breaker: CircuitBreaker | None = None,
    linger_s: float = 0.0,
    commits: int = 1,
) -> None:
    """`run_consumer` in two stages: a batch is prepared while the one before it commits.

    `prepare` is the consumer's own work (decoding, building rows; it may term or
    nak messages), `commit` its database transaction and the acks after it. On one
    core, decoding the next batch while the database writes the last one keeps both
    busy. Up to `commits` batches commit at once, started in fetch order, each in its
    own transaction (so with more than one, a commit must bear another beside it, as
    it must one of another replica). A commit is never cancelled half-way: on stop
    those in flight are awaited (they ack what they committed), and batches fetched or
    prepared but not committed are nak'ed. A commit waiting for an open `breaker`
    holds no transaction and is cancelled on stop.
    """
    committing: list[asyncio.Task[None]] = []  # oldest first
    uncommitted: list[Msg] = []  # prepared, waiting for a commit to finish
    async with _pulling(js, spec, batch_size, fetch_timeout, breaker, linger_s) as batches:
        try:
            while True:
                msgs = await batches.next()
                if not msgs:
                    continue
                uncommitted = msgs
                work = await prepare(msgs)
                committing = [t for t in committing if not t.done()]
                if len(committing) >= commits:
                    # Shielded: a stop while waiting here must not cancel the transaction.
                    await asyncio.shield(committing.pop(0))
                committing.append(asyncio.create_task(commit(work)))
                uncommitted = []
        finally:
            in_flight = [t for t in committing if not t.done()]
            if in_flight:
                if breaker is not None and breaker.is_open:
                    for task in in_flight:
                        task.cancel()  # parked until the database is back: no transaction
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(
                        asyncio.shield(asyncio.gather(*in_flight, return_exceptions=True)),
                        stop_timeout,
                    )
            await _nak_all(uncommitted)


async def _nak_all(msgs: list[Msg]) -> None:
    """Hand messages back for redelivery at once; a failed nak (the connection may be the
    problem) leaves that one to `ack_wait`."""
    for msg in msgs:
        with contextlib.suppress(Exception):
            await msg.nak()


# Status codes the server answers a pull request with instead of messages.
_NO_MESSAGES = "404"  # a no_wait request found nothing
_REQUEST_TIMEOUT = "408"  # a waiting request expired
_IDLE_HEARTBEAT = "100"


class PullRefusedError(Exception):
    """The server ended a pull request with an error status instead of messages."""


def _take(sub: Any, msg: Msg) -> str | None:
    """Account for one message taken off `sub`'s queue; its status code, None for a message."""
    sub._pending_size -= len(msg.data)
    sub._pending_queue.task_done()
    headers = msg.headers
    return headers.get("Status") if headers else None


def _drain_into(sub: Any, msgs: list[Msg], batch: int) -> bool:
    """Move the messages already queued on `sub` into `msgs`, up to `batch`; True when a
    status was among them (it ends a request's answer; it is dropped)."""
    queue = sub._pending_queue
    ended = False
    while len(msgs) < batch and not queue.empty():
        msg = queue.get_nowait()
        if _take(sub, msg) is None:
            msgs.append(msg)
        else:
            ended = True
    return ended


async def pull(psub: Any, batch: int, timeout: float) -> list[Msg]:
    """Up to `batch` messages of a bound pull consumer: what is there at once, else the
    first ones to arrive within `timeout` (TimeoutError when none do).

    nats-py's `fetch` waits for each message with a task of its own (a uuid, a task and a
    timer per message): a third of a consumer's CPU at a few thousand messages a second.
    This asks the same way (a no_wait request, taken whole: what is there, up to `batch`;
    when nothing is, one that waits until `timeout` and is answered with the first arrivals)
    and takes messages off the subscription's queue in bursts. A waiting request answered after
    we returned leaves its messages on the queue; the next call takes them first.
    """
    sub = psub._sub
    msgs: list[Msg] = []
    _drain_into(sub, msgs, batch)
    if msgs:
        return msgs
    nc = psub._nc
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    waiting = False  # False: the no_wait request is out; True: the one that waits
    await nc.publish(
        psub._nms, json.dumps({"batch": batch, "no_wait": True}).encode(), psub._deliver
    )
    async with asyncio.timeout_at(deadline):
        while True:
            msg = await sub._pending_queue.get()
            status = _take(sub, msg)
            if status is None:
                msgs.append(msg)
                ended = _drain_into(sub, msgs, batch)
                break
            if status not in (_NO_MESSAGES, _REQUEST_TIMEOUT, _IDLE_HEARTBEAT):
                # 409: too many waiting requests, a leader change, the consumer deleted
                reason = (msg.headers or {}).get("Description", "")
                raise PullRefusedError(f"pull request refused: {status} {reason}".strip())
            if waiting or status == _IDLE_HEARTBEAT:
                # The end of an earlier request (statuses name no request): wait on. Ours
                # expires just before the deadline, which raises TimeoutError here.
                continue
            # Nothing there now: wait for what arrives, until the deadline.
            left_ns = int((deadline - loop.time()) * 1e9) - 100_000
            if left_ns <= 0:
                raise TimeoutError
            waiting = True
            request = {"batch": batch, "expires": left_ns}
            await nc.publish(psub._nms, json.dumps(request).encode(), psub._deliver)
    if not waiting and not ended:
        # The no_wait answer is one burst: all there is, then a status unless the batch is
        # full. Taken whole, so nothing of it is left on the queue.
        try:
            async with asyncio.timeout_at(deadline):
                await _rest_of_burst(sub, msgs, batch)
        except TimeoutError:
            pass  # what came so far
        except asyncio.CancelledError:
            await _nak_all(msgs)  # off the queue and never handed out: redeliver at once
            raise
    return msgs


async def _rest_of_burst(sub: Any, msgs: list[Msg], batch: int) -> None:
    """Add messages to `msgs` until `batch` or a status ends the answer to a no_wait request."""
    while len(msgs) < batch:
        msg = await sub._pending_queue.get()
        if _take(sub, msg) is not None:
            return
        msgs.append(msg)
        if _drain_into(sub, msgs, batch):
            return


class _Batches:
    """Pull batches of a bound consumer, always fetching one ahead of the caller."""

    def __init__(
        self,
        psub: Any,
        spec: ConsumerSpec,
        batch_size: int,
        timeout: float,
        breaker: CircuitBreaker | None = None,
        linger_s: float = 0.0,
    ) -> None:
        self._psub = psub
        self._linger_s = linger_s
        self._short = False  # the last fetch brought less than a full batch
        self._spec = spec
        self._batch_size = batch_size
        self._timeout = timeout
        self._breaker = breaker
        # Fetched and not yet acked, nak'ed or terminated: kept alive while paused.
        self.held: list[Msg] = []
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
        if self._short and self._linger_s > 0:
            await asyncio.sleep(self._linger_s)
        if self._breaker is not None:
            await self._breaker.closed()
        try:
            msgs = await pull(self._psub, self._batch_size, self._timeout)
        except TimeoutError:
            self._short = False  # it waited for messages already
            return []
        except Exception as exc:  # connection blips: the client reconnects
            log.warning("fetch on %s failed: %s", self._spec.name, exc)
            await asyncio.sleep(0.5)
            return []
        self._short = len(msgs) < self._batch_size
        if msgs:
            self.held = [m for m in self.held if not m.is_acked] + msgs
        return msgs

    async def keep_alive(self) -> int:
        """Reset `ack_wait` of every message still held; returns how many."""
        self.held = [m for m in self.held if not m.is_acked]
        for msg in self.held:
            with contextlib.suppress(Exception):
                await msg.in_progress()
        return len(self.held)

    async def close(self) -> None:
        """Nak a batch fetched but never handed out, so it is redelivered at once; and what
        a pull request still open on the server delivers until it expires (at most the
        fetch timeout), which would otherwise wait out `ack_wait` on a closed subscription."""
        await _return_unhandled(self._ahead)
        sub = self._psub._sub
        loop = asyncio.get_running_loop()
        until = loop.time() + self._timeout
        while True:
            late: list[Msg] = []
            _drain_into(sub, late, 1_000_000)
            await _nak_all(late)
            if loop.time() >= until:
                return
            await asyncio.sleep(min(0.05, until - loop.time()))


@contextlib.asynccontextmanager
async def _pulling(
    js: JetStreamContext,
    spec: ConsumerSpec,
    batch_size: int,
    fetch_timeout: float,
    breaker: CircuitBreaker | None = None,
    linger_s: float = 0.0,
) -> AsyncIterator[_Batches]:
    """Bind the consumer, watch its lag, and fetch ahead; undo all of it on the way out."""
    psub = await bind(js, spec)
    lag_task = asyncio.create_task(_watch_lag(js, spec))
    batches = _Batches(psub, spec, batch_size, fetch_timeout, breaker, linger_s)
    holder = (
        asyncio.create_task(_hold_while_paused(batches, breaker, spec))
        if breaker is not None
        else None
    )
    try:
        yield batches
    finally:
        lag_task.cancel()
        if holder is not None:
            holder.cancel()
        try:
            await batches.close()
        finally:
            # Without this a stopping process waits out its drain timeout on the pull
            # subscription (also when a second cancellation cuts the close short).
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
    await _nak_all(ahead.result())


async def _hold_while_paused(
    batches: _Batches, breaker: CircuitBreaker, spec: ConsumerSpec
) -> None:
    """While the breaker is open, keep every held message from timing out (a redelivery
    would spend one of its `max_deliver` attempts)."""
    every = max(spec.ack_wait_s / 3, 0.1)
    while True:
        await asyncio.sleep(every)
        if breaker.is_open:
            held = await batches.keep_alive()
            log.info("%s paused (%s down): holding %d messages", spec.name, breaker.name, held)


async def _watch_lag(js: JetStreamContext, spec: ConsumerSpec) -> None:
    while True:
        try:
            info = await js.consumer_info(spec.stream, spec.name)
            CONSUMER_PENDING.labels(spec.name).set(info.num_pending or 0)
            CONSUMER_ACK_PENDING.labels(spec.name).set(info.num_ack_pending or 0)
        except Exception:
            log.debug("consumer_info for %s failed", spec.name, exc_info=True)
        await asyncio.sleep(5)
