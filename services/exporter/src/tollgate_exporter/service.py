"""The exporter's use cases: export an event, check a key's logging, replay dead letters.

`Exporter.export` routes one decoded event and hands it to the `Dispatcher`:
per-destination queues and workers with batching, retries with backoff,
dead-letters and acks. `key_health` answers /key/health; `DeadLetterDesk` lists
the EXPORT stream's dead letters and re-delivers them (`python -m tollgate_exporter dlq`).

Each destination (a sink plus endpoint and credentials) has its own bounded queue
and its own worker task, so a dead or slow destination only ever waits on itself.

Ack policy: a JetStream message is acknowledged once every destination it was
routed to has accepted it or dead-lettered it (`Ticket`). Until then the
dispatcher tells JetStream the message is still in progress, so it is not
redelivered while a destination retries. A destination retries for at most
`export_retry_deadline_s`, so a dead destination holds acks for a bounded time
and `max_ack_pending` is never reached by one bad project under normal load;
if its queue fills anyway, new items for it are dead-lettered at once rather
than slowing the others. If the process dies, unacknowledged messages are
redelivered and re-sent; Langfuse and OTLP receive the same ids again, so they
de-duplicate, and webhook receivers de-duplicate on `event_id`.

Why not "ack on enqueue into a durable per-destination stream": it doubles every
event on disk and needs one consumer per destination, created and deleted as
teams change their settings; the bounded retry window gives the same isolation.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from nats.aio.msg import Msg
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
)

from tollgate_exporter.content import redact
from tollgate_exporter.dead_letters import DeadLetter
from tollgate_exporter.destinations import Destination
from tollgate_exporter.health import DestinationHealth, key_health_report
from tollgate_exporter.metrics import (
    DEAD_LETTERED,
    EXPORTED,
    FAILED,
    LAG,
    QUEUE_DEPTH,
    RETRIED,
    UNROUTABLE,
)
from tollgate_exporter.routing import Outcome, Route, Router
from tollgate_exporter.settings import ExporterSettings
from tollgate_exporter.sinks.base import (
    BatchResult,
    ExportItem,
    RetryableError,
    Sink,
    SinkError,
    stable_id,
)
from tollgate_shared.events import (
    EventDecodeError,
    ExportDeadLettered,
    LlmRequestCompleted,
    LlmRequestFailed,
    LlmRequestFinished,
    decode,
)
from tollgate_shared.retries import wait_retry_after
from tollgate_shared.state import KeyState, hash_key

log = logging.getLogger(__name__)

# What the exporter reads from the LLM stream.
EXPORTED_EVENTS = (LlmRequestCompleted, LlmRequestFailed)

DeadLetterPublisher = Callable[[ExportDeadLettered], Awaitable[None]]


@dataclass
class SourceInfo:
    subject: str
    stream_seq: int | None


class Ticket:
    """One JetStream message waiting on its destinations; acked when all have settled."""

    def __init__(
        self, msg: Msg, event_id: str, remaining: int, on_settled: Callable[[Ticket], None]
    ) -> None:
        self.msg = msg
        self.event_id = event_id
        self.remaining = remaining
        self.redeliver = False  # a dead-letter could not be published: nak, not ack
        self._on_settled = on_settled

    def settle(self, *, redeliver: bool = False) -> None:
        self.redeliver = self.redeliver or redeliver
        self.remaining -= 1
        if self.remaining == 0:
            self._on_settled(self)


@dataclass
class Queued:
    item: ExportItem
    ticket: Ticket
    source: SourceInfo


class DestinationWorker:
    """Drains one destination's queue in batches (size or time), with retries."""

    def __init__(
        self,
        destination: Destination,
        sink: Sink,
        settings: ExporterSettings,
        health: DestinationHealth,
        dead_letter: Callable[[Destination, Queued, int, str, int | None], Awaitable[None]],
    ) -> None:
        self.destination = destination
        self._sink = sink
        self._settings = settings
        self._health = health
        self._dead_letter = dead_letter
        self.queue: asyncio.Queue[Queued] = asyncio.Queue(settings.export_max_queue)
        self._labels = labels = (destination.sink, destination.label)
        # This destination's series, looked up once (a label lookup per event adds up).
        self._depth = QUEUE_DEPTH.labels(*labels)
        self._exported = EXPORTED.labels(*labels)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"export-{self.destination.key}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def offer(self, queued: Queued) -> bool:
        try:
            self.queue.put_nowait(queued)
        except asyncio.QueueFull:
            return False
        self._depth.set(self.queue.qsize())
        return True

    async def _next_batch(self) -> list[Queued]:
        batch = [await self.queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.export_batch_wait_s
        while len(batch) < self._settings.export_batch_size:
            if not self.queue.empty():
                batch.append(self.queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), remaining))
            except TimeoutError:
                break
        self._depth.set(self.queue.qsize())
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            try:
                await self.deliver(batch)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one bad batch stop the destination
                log.exception("delivery to %s crashed; batch dead-lettered", self.destination.label)
                for q in batch:
                    await self._dead_letter(self.destination, q, 0, "exporter error", None)

    def _before_sleep(self, state: RetryCallState) -> None:
        RETRIED.labels(*self._labels).inc()
        exc = state.outcome.exception() if state.outcome else None
        log.info(
            "%s: attempt %d failed (%s); retrying",
            self.destination.label,
            state.attempt_number,
            exc,
        )

    async def deliver(self, batch: list[Queued]) -> None:
        s = self._settings
        items = [q.item for q in batch]
        attempts = 0
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(RetryableError),
            stop=stop_after_attempt(s.export_retry_attempts)
            | stop_after_delay(s.export_retry_deadline_s),
            # A destination's Retry-After wins over the backoff, within the retry deadline.
            wait=wait_retry_after(
                initial=s.export_retry_initial_s,
                maximum=s.export_retry_max_s,
                cap=s.export_retry_deadline_s,
            ),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        result: BatchResult | None = None
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    try:
                        result = await self._sink.send(self.destination, items)
                    except SinkError as exc:
                        self._failed(str(exc))
                        raise
        except SinkError as exc:
            for q in batch:
                await self._dead_letter(self.destination, q, attempts, str(exc), exc.status_code)
            return
        assert result is not None
        now = time.time()
        h = self._health
        h.consecutive_failures = 0
        h.last_success = now
        oldest = min(q.item.event.occurred_at for q in batch)
        LAG.labels(*self._labels).set(max(0.0, (datetime.now(UTC) - oldest).total_seconds()))
        exported = 0
        for index, q in enumerate(batch):
            reason = result.rejected.get(index)
            if reason is not None:
                await self._dead_letter(self.destination, q, attempts, reason, None)
                continue
            exported += 1
            q.ticket.settle()
        self._exported.inc(exported)
        h.exported += exported

    def _failed(self, error: str) -> None:
        FAILED.labels(*self._labels).inc()
        h = self._health
        h.consecutive_failures += 1
        h.last_failure = time.time()
        h.last_error = error[:500]


class Dispatcher:
    """Routes decoded events into destination queues and acks messages when they settle."""

    def __init__(
        self,
        settings: ExporterSettings,
        sinks: Mapping[str, Sink],
        publish_dead_letter: DeadLetterPublisher,
        ack_wait_s: float,
    ) -> None:
        self._settings = settings
        self._sinks = sinks
        self._publish_dead_letter = publish_dead_letter
        self._ack_wait_s = ack_wait_s
        self._workers: dict[str, DestinationWorker] = {}
        self.health: dict[str, DestinationHealth] = {}
        self._tickets: dict[str, Ticket] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._heartbeat: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return len(self._tickets)

    def start(self) -> None:
        self._heartbeat = asyncio.create_task(self._keep_in_progress(), name="export-heartbeat")

    async def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        for worker in self._workers.values():
            await worker.stop()
        # What is still in flight goes back to JetStream now rather than after ack_wait.
        for ticket in list(self._tickets.values()):
            with contextlib.suppress(Exception):
                await ticket.msg.nak()
        self._tickets.clear()
        for task in list(self._tasks):
            task.cancel()

    def health_of(self, destination: Destination) -> DestinationHealth:
        h = self.health.get(destination.key)
        if h is None:
            h = self.health[destination.key] = DestinationHealth(
                destination.sink, destination.label
            )
        return h

    def _worker(self, destination: Destination) -> DestinationWorker:
        worker = self._workers.get(destination.key)
        if worker is None:
            worker = DestinationWorker(
                destination,
                self._sinks[destination.sink],
                self._settings,
                self.health_of(destination),
                self._dead_letter,
            )
            worker.start()
            self._workers[destination.key] = worker
        return worker

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def submit(self, msg: Msg, event: LlmRequestFinished, routes: tuple[Route, ...]) -> None:
        """Queue `event` for each route; the message is acked once all have settled."""
        if not routes:
            await msg.ack()
            return
        existing = self._tickets.get(event.event_id)
        if existing is not None:  # redelivered while still in flight: ack the newest delivery
            existing.msg = msg
            return
        ticket = Ticket(msg, event.event_id, len(routes), self._settled)
        self._tickets[event.event_id] = ticket
        source = SourceInfo(msg.subject, _stream_seq(msg))
        redacted: LlmRequestFinished | None = None
        for r in routes:
            if r.redact:
                redacted = redacted or redact(event)
            item = ExportItem(redacted if r.redact and redacted else event, r.redact)
            queued = Queued(item, ticket, source)
            if r.unusable is not None:  # never send what it would carry (an unset variable)
                await self._dead_letter(r.destination, queued, 0, r.unusable, None)
                continue
            worker = self._worker(r.destination)
            if not worker.offer(queued):
                await self._dead_letter(
                    r.destination,
                    queued,
                    0,
                    f"queue of {worker.queue.maxsize} full for this destination",
                    None,
                )

    def _settled(self, ticket: Ticket) -> None:
        self._tickets.pop(ticket.event_id, None)
        self._spawn(self._finish(ticket))

    async def _finish(self, ticket: Ticket) -> None:
        try:
            if ticket.redeliver:
                await ticket.msg.nak(delay=5)
            else:
                await ticket.msg.ack()
        except Exception as exc:
            log.warning("could not settle message of event %s: %s", ticket.event_id, exc)

    async def _dead_letter(
        self,
        dest: Destination,
        queued: Queued,
        attempts: int,
        error: str,
        status_code: int | None,
    ) -> None:
        event = queued.item.event
        labels = (dest.sink, dest.label)
        DEAD_LETTERED.labels(*labels).inc()
        h = self.health_of(dest)
        h.dead_lettered += 1
        h.last_dead_letter = time.time()
        h.last_error = error[:500]
        log.warning(
            "dead-lettering event %s for %s after %d attempt(s): %s",
            event.event_id,
            dest.label,
            attempts,
            error,
        )
        record = ExportDeadLettered(
            event_id=stable_id(event.event_id, dest.key, "dead-letter"),
            producer="exporter",
            traceparent=event.traceparent,
            source_event_id=event.event_id,
            source_subject=queued.source.subject,
            source_stream_seq=queued.source.stream_seq,
            request_id=event.request_id,
            team_id=event.team_id,
            sink=dest.sink,
            destination=dest.label,
            attempts=attempts,
            error=error[:2000],
            status_code=status_code,
        )
        try:
            await self._publish_dead_letter(record)
        except Exception as exc:
            log.error(
                "could not publish dead-letter for %s (%s); will redeliver", event.event_id, exc
            )
            queued.ticket.settle(redeliver=True)
            return
        queued.ticket.settle()

    async def _keep_in_progress(self) -> None:
        interval = max(1.0, self._ack_wait_s / 3)
        while True:
            await asyncio.sleep(interval)
            for ticket in list(self._tickets.values()):
                with contextlib.suppress(Exception):
                    await ticket.msg.in_progress()


def _stream_seq(msg: Msg) -> int | None:
    try:
        return int(msg.metadata.sequence.stream)
    except Exception:
        return None


def outcome_of(event: LlmRequestFinished) -> Outcome:
    return "failure" if isinstance(event, LlmRequestFailed) else "success"


# --- export --------------------------------------------------------------------

Hydrator = Callable[[LlmRequestFinished], Awaitable[LlmRequestFinished]]


class ContentUnavailableError(Exception):
    """An event's content (moved to the object store) cannot be read yet: redeliver later."""


class Exporter:
    """Exports decoded LLM events: route each, then queue it for its destinations."""

    def __init__(self, router: Router, dispatcher: Dispatcher, hydrate: Hydrator) -> None:
        self._router = router
        self._dispatcher = dispatcher
        self._hydrate = hydrate

    async def export(self, msg: Msg, event: LlmRequestFinished) -> None:
        """Route `event` and queue it; `msg` is acked once every destination has settled.

        Raises ContentUnavailableError when the content it must send cannot be read yet.
        """
        routes = self._router.for_call(event.api_key_hash, event.team_id, outcome_of(event))
        for problem in routes.problems:
            UNROUTABLE.labels(problem.callback).inc()
            log.warning(
                "event %s: %s callback %s not delivered: %s",
                event.event_id,
                problem.source,
                problem.callback,
                problem.reason,
            )
        if routes.routes and event.content_ref:
            try:
                event = await self._hydrate(event)
            except Exception as exc:
                raise ContentUnavailableError(f"content of {event.event_id}: {exc}") from exc
        await self._dispatcher.submit(msg, event, routes.routes)


# --- /key/health ---------------------------------------------------------------


class ExporterStartingError(Exception):
    """The key and team settings are not loaded yet."""


class UnknownKeyError(Exception):
    """The presented key is neither the master key nor a key the exporter knows."""


@dataclass
class KeyHealth:
    """The /key/health use case: the presented key's callbacks and their delivery health."""

    router: Callable[[], Router | None]
    key_lookup: Callable[[str], KeyState | None]
    health: Callable[[Destination], DestinationHealth | None]
    master_key: str | None
    window_s: float

    def check(self, presented: str) -> dict[str, Any]:
        """LiteLLM's KeyHealthResponse; raises ExporterStartingError or UnknownKeyError."""
        router = self.router()
        if router is None:
            raise ExporterStartingError("exporter is starting")
        if self.master_key and hmac.compare_digest(presented.encode(), self.master_key.encode()):
            routes = router.for_call(None, None, None)
        else:
            key = self.key_lookup(hash_key(presented))
            if key is None:
                raise UnknownKeyError("Authentication Error, invalid user key")
            routes = router.for_call(key.token, key.team_id, None)
        return key_health_report(routes, self.health, self.window_s)


# --- dead letters ----------------------------------------------------------------


class DeadLetterStore(Protocol):
    """Where dead letters are kept (the EXPORT stream) and their sources found (LLM)."""

    async def all(self) -> list[DeadLetter]: ...

    async def source(self, record: ExportDeadLettered) -> tuple[str, bytes] | None: ...

    async def delete(self, seq: int) -> None: ...


@dataclass(frozen=True)
class Replayed:
    """What a replay did with one dead letter."""

    letter: DeadLetter
    status: Literal["delivered", "failed"]
    detail: str


class DeadLetterDesk:
    """Lists dead letters and re-delivers them to their destination through its sink.

    A replay routes the source event again with the current routing state and sends
    it to the destination the letter names (the same destination key when the
    credentials are unchanged, else the same sink and label), in one attempt. A
    delivered letter is deleted, so a replay is never repeated; a failed one stays.
    """

    def __init__(
        self,
        letters: DeadLetterStore,
        router: Router,
        sinks: Mapping[str, Sink],
        hydrate: Hydrator,
    ) -> None:
        self._letters = letters
        self._router = router
        self._sinks = sinks
        self._hydrate = hydrate

    async def letters(
        self, *, sink: str | None = None, request_id: str | None = None
    ) -> list[DeadLetter]:
        """The dead letters still in the stream, oldest first, narrowed by sink / request."""
        return [
            letter
            for letter in await self._letters.all()
            if (sink is None or letter.record.sink == sink)
            and (request_id is None or letter.record.request_id == request_id)
        ]

    async def replay(
        self, *, sink: str | None = None, request_id: str | None = None
    ) -> list[Replayed]:
        """Re-deliver each dead letter (narrowed as `letters`); what happened to each."""
        out: list[Replayed] = []
        for letter in await self.letters(sink=sink, request_id=request_id):
            try:
                detail = await self._replay(letter)
            except _NotReplayedError as exc:
                out.append(Replayed(letter, "failed", str(exc)))
                continue
            try:
                await self._letters.delete(letter.seq)
            except Exception as exc:  # delivered; a second replay re-sends under the same ids
                detail = f"{detail}, but the dead letter could not be deleted: {exc}"
                out.append(Replayed(letter, "failed", detail))
                continue
            out.append(Replayed(letter, "delivered", detail))
        return out

    def _route(self, event: LlmRequestFinished, record: ExportDeadLettered) -> Route:
        routes = self._router.for_call(event.api_key_hash, event.team_id, outcome_of(event))
        for r in routes.routes:
            if stable_id(event.event_id, r.destination.key, "dead-letter") == record.event_id:
                return r
        for r in routes.routes:
            if (r.destination.sink, r.destination.label) == (record.sink, record.destination):
                return r
        raise _NotReplayedError(f"the event is no longer routed to {record.destination}")

    async def _replay(self, letter: DeadLetter) -> str:
        record = letter.record
        found = await self._letters.source(record)
        if found is None:
            raise _NotReplayedError(
                f"source event {record.source_event_id} is no longer in the LLM stream"
            )
        subject, data = found
        try:
            event = decode(subject, data, EXPORTED_EVENTS)
        except EventDecodeError as exc:
            raise _NotReplayedError(f"source event unreadable: {exc}") from None
        route = self._route(event, record)
        if route.unusable is not None:
            raise _NotReplayedError(route.unusable)
        if event.content_ref:
            try:
                event = await self._hydrate(event)
            except Exception as exc:
                raise _NotReplayedError(f"content not readable: {exc}") from None
        sink = self._sinks.get(route.destination.sink)
        if sink is None:
            raise _NotReplayedError(f"no sink {route.destination.sink!r} in this exporter")
        item = ExportItem(redact(event) if route.redact else event, route.redact)
        try:
            result = await sink.send(route.destination, [item])
        except SinkError as exc:
            raise _NotReplayedError(str(exc)) from None
        if result.rejected:
            raise _NotReplayedError(result.rejected[0])
        return f"delivered to {route.destination.label}"


class _NotReplayedError(Exception):
    pass
