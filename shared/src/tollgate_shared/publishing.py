"""Publishes events off the response path: an in-memory queue, JetStream, and a disk spool.

`EventPublisher.emit()` never blocks and never raises: it serialises the event
where it is emitted, so an event that cannot become JSON is handled there. A
background task publishes in order with `Nats-Msg-Id` set to the event id (so
JetStream drops duplicates). While NATS is unreachable, events go to the on-disk
spool; when it returns, the spool is replayed in order before anything newer.

Nothing that can be costed is dropped: an event too large for one message has
its content moved to the object store (live and at replay); one that still does
not fit, or cannot be serialised, is published without its content and metadata
(the cost, tokens and who made the call survive, marked `tollgate_dropped`). Only
an event that fails even then is dead-lettered, into the spool's `dead` table,
counted and logged. A permanent failure never stops the spool: replay moves on.
The publishing task is supervised: if it fails it is restarted with backoff, the
batch it held is kept, and `check()` (for `/health`) fails while it is down.

What a SIGKILL can lose is bounded by time: an event still in memory `write_ahead_ms`
after it was emitted (queued, or in a batch JetStream has not acknowledged) is written
ahead to the spool by a watchdog that looks every quarter of that. So a crash loses
at most the events emitted in the last `write_ahead_ms * 1.25` (plus a write in
progress); while NATS acks promptly nothing touches the disk. A batch written ahead
and then acknowledged is deleted from the spool; if it fails it stays there (a
re-sent copy is dropped by JetStream's de-duplication window). On a clean stop,
whatever `flush` could not publish in time (the batch in flight included) is spooled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import nats
from nats.aio.client import Client as NATS
from nats.errors import BadSubjectError, MaxPayloadError
from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError
from prometheus_client import Counter, Gauge

from tollgate_shared import names, permissions
from tollgate_shared.events import Event, EventDecodeError, LlmRequestFinished, decode
from tollgate_shared.settings import NatsAuth
from tollgate_shared.spool import DeadLetter, Spool, SpoolRow

log = logging.getLogger(__name__)

EVENTS_PUBLISHED = Counter(
    "tollgate_events_published_total", "Events acknowledged by JetStream", ["event_type"]
)
EVENTS_SPOOLED = Counter(
    "tollgate_events_spooled_total", "Events written to the disk spool", ["event_type"]
)
# Several workers of one ingress (multiprocess mode): the sum over the running ones.
SPOOL_DEPTH = Gauge(
    "tollgate_spool_depth", "Events waiting in the disk spool", multiprocess_mode="livesum"
)
QUEUE_DEPTH = Gauge(
    "tollgate_publish_queue_depth",
    "Events waiting in memory to be published",
    multiprocess_mode="livesum",
)
EVENTS_SALVAGED = Counter(
    "tollgate_events_salvaged_total",
    "Events published without content and metadata (unserialisable or too large)",
    ["event_type"],
)
EVENTS_DEAD_LETTERED = Counter(
    "tollgate_events_dead_lettered_total",
    "Events that could never be published (kept in the spool's dead table)",
    ["event_type"],
)
PUBLISHER_RESTARTS = Counter(
    "tollgate_publisher_restarts_total", "Times the publishing task failed and was restarted"
)

_HEADROOM = 4096  # room for headers and protocol framing within max_payload


# What a failed publish means: these never succeed however often they are retried.
_PERMANENT: tuple[type[BaseException], ...] = (
    MaxPayloadError,
    BadSubjectError,
    BadRequestError,
    ValueError,
    TypeError,
)

Item = tuple[Event, bytes]


def is_permanent(exc: BaseException) -> bool:
    return isinstance(exc, _PERMANENT)


def without_content(event: Event, reason: str) -> Event | None:
    """The completed/failed event stripped to what costing needs, marked with why; None for
    other events (they carry nothing that could be dropped)."""
    if not isinstance(event, LlmRequestFinished):
        return None
    return event.model_copy(
        update={
            "messages": None,
            "response": None,
            "proxy_server_request": None,
            "model_parameters": {},
            "metadata": {"tollgate_dropped": reason[:300]},
            "content_ref": None,
        }
    )


def msg_headers(event: Event) -> dict[str, str]:
    return {"Nats-Msg-Id": event.event_id, names.HDR_EVENT_TYPE: event.event_type}


async def connect_nats(url: str, name: str, *, auth: NatsAuth | None = None, **kwargs: Any) -> NATS:
    """Connect with unlimited reconnects (the client buffers while reconnecting).

    As `auth`'s user, with its TLS settings; without `auth`, as the process's own NATS
    user from the environment (TOLLGATE_NATS_USER / TOLLGATE_NATS_PASSWORD / …_TLS_*),
    else as the URL says (anonymous, or its own `user:password@`). `url` may list a
    cluster's nodes, comma-separated, so a client that starts while one node is down still
    connects to another. A client with a user takes its replies and deliveries on that
    user's own inbox subjects (`permissions.inbox_prefix`), the only ones it may read.
    """
    options = (auth if auth is not None else NatsAuth()).connect_options()
    options.update(kwargs)
    servers = [u.strip() for u in url.split(",") if u.strip()]
    user = options.get("user") or next(
        (p.username for p in map(urlsplit, servers) if p.username), None
    )
    if user:
        options.setdefault("inbox_prefix", permissions.inbox_prefix(unquote(user)))
    return await nats.connect(
        servers if len(servers) > 1 else url,
        name=name,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=2,
        **options,
    )


async def _drain_or_close(nc: NATS, timeout: float) -> None:
    """Drain the connection; a server that stopped answering must not hold the stop up, so
    past `timeout` the connection is closed instead."""
    drain = asyncio.ensure_future(nc.drain())
    done, _ = await asyncio.wait({drain}, timeout=timeout)
    if done:
        with contextlib.suppress(Exception):
            drain.result()
        return
    drain.cancel()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(nc.close(), 1.0)


async def publish_event(
    js: JetStreamContext, event: Event, timeout: float = 5.0, payload: bytes | None = None
) -> None:
    """Publish one event and wait for JetStream's ack: the single publish path.

    `payload` is the event's JSON when the caller already has it.
    """
    data = event.to_json() if payload is None else payload
    await js.publish(event.subject(), data, timeout=timeout, headers=msg_headers(event))


# The object store's own default chunk (128 KiB), unless the server's max payload is smaller.
_CHUNK = 128 * 1024


async def offload_content(
    js: JetStreamContext, event: LlmRequestFinished, max_payload: int | None = None
) -> LlmRequestFinished:
    """Move an oversized event's content to the object store and carry a reference."""
    obj = await js.object_store(names.OBJ_BODIES)
    body = event.model_dump_json(include={"messages", "response", "proxy_server_request"})
    chunk = _CHUNK if max_payload is None else min(_CHUNK, max_payload - _HEADROOM)
    meta = api.ObjectMeta(name=event.event_id, options=api.ObjectMetaOptions(max_chunk_size=chunk))
    await obj.put(event.event_id, body.encode(), meta=meta)
    return event.model_copy(
        update={
            "messages": None,
            "response": None,
            "proxy_server_request": None,
            "content_ref": event.event_id,
        }
    )


async def hydrate_content(js: JetStreamContext, event: LlmRequestFinished) -> LlmRequestFinished:
    """The inverse of `offload_content`, for consumers that need the content."""
    if not event.content_ref:
        return event
    obj = await js.object_store(names.OBJ_BODIES)
    res = await obj.get(event.content_ref)
    content = json.loads(res.data or b"{}")
    return event.model_copy(update={**content, "content_ref": None})


class EventPublisher:
    """Fire-and-forget publishing with durable spooling; one per process."""

    def __init__(
        self,
        nats_url: str,
        spool_path: Path,
        client_name: str,
        *,
        max_queue: int = 50_000,
        batch: int = 256,
        ack_timeout: float = 5.0,
        write_ahead_ms: float | None = 200.0,
    ) -> None:
        self._url = nats_url
        self._name = client_name
        self._spool = Spool(spool_path)
        # (monotonic time emitted, item), oldest first; bounded by max_queue.
        self._queue: deque[tuple[float, Item]] = deque()
        self._max_queue = max_queue
        self._wakeup = asyncio.Event()
        self._write_ahead_s = write_ahead_ms / 1000 if write_ahead_ms else None
        self._batch = batch
        self._ack_timeout = ack_timeout
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._idle = asyncio.Event()
        self._idle.set()
        # The batch the publishing task holds; kept if the task fails. When it has been
        # written ahead, `_inflight_seqs` is its rows' (first, last) seq in the spool.
        self._inflight: list[Item] = []
        self._inflight_since = 0.0
        self._inflight_seqs: tuple[int, int] | None = None
        self._keep_written_ahead = False
        self._running = False
        self._restarts = 0
        self._last_error: str | None = None
        SPOOL_DEPTH.set(len(self._spool))

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    @property
    def jetstream(self) -> JetStreamContext | None:
        return self._js

    @property
    def spooled(self) -> int:
        return len(self._spool)

    @property
    def running(self) -> bool:
        """Whether the publishing task is running (not failed and waiting to restart)."""
        return self._running

    def dead_letters(self) -> list[DeadLetter]:
        return self._spool.dead_letters()

    def state(self) -> dict[str, object]:
        return {
            "running": self._running,
            "connected": self.connected,
            "spooled": self.spooled,
            "queued": len(self._queue),
            "restarts": self._restarts,
            "last_error": self._last_error,
        }

    async def check(self) -> dict[str, object]:
        """For `/health`: raises while the task is down or NATS is unreachable."""
        if not self._running:
            raise RuntimeError(f"event publisher is down ({self._last_error}); restarting")
        if not self.connected:
            raise ConnectionError(f"NATS unreachable; {self.spooled} events spooled")
        return self.state()

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._connect_forever(), name="publisher-connect"),
            asyncio.create_task(self._supervise(), name="publisher-run"),
        ]
        if self._write_ahead_s is not None:
            self._tasks.append(
                asyncio.create_task(self._write_ahead_forever(), name="publisher-write-ahead")
            )

    def emit(self, event: Event) -> None:
        """Queue an event for publishing; never blocks the caller, never loses it."""
        self._idle.clear()
        item = self._serialised(event)
        if item is None:
            return
        if len(self._queue) >= self._max_queue:
            # Memory is bounded: past it, go straight to disk (still in order,
            # because the worker drains the spool before the queue).
            self._spool_items([item])
        else:
            self._queue.append((time.monotonic(), item))
            self._wakeup.set()
        QUEUE_DEPTH.set(len(self._queue))

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued has been published (True) or timeout (False)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self, timeout: float = 5.0) -> None:
        await self.flush(timeout)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        # Whatever is still in memory, the batch in flight included, is kept on disk
        # for the next start (a re-sent copy is dropped by JetStream's de-duplication).
        leftover = self._take_inflight()
        leftover += self._take_queued()
        if leftover:
            self._spool_items(leftover)
        if self._nc is not None:
            await _drain_or_close(self._nc, timeout)
        self._spool.close()

    # -- serialising, fitting, dead-lettering -------------------------------
    def _serialised(self, event: Event) -> Item | None:
        try:
            return event, event.to_json()
        except Exception as exc:
            return self._salvage(event, f"not serialisable: {type(exc).__name__}: {exc}")

    def _salvage(self, event: Event, reason: str, limit: int | None = None) -> Item | None:
        """The event without content and metadata, if that serialises (and fits); else it is
        dead-lettered and None returned."""
        lean = without_content(event, reason)
        if lean is not None:
            try:
                data = lean.to_json()
            except Exception as exc:
                reason = f"{reason}; without content: {type(exc).__name__}: {exc}"
            else:
                if limit is None or len(data) <= limit:
                    log.error("event %s published without its content: %s", event.event_id, reason)
                    EVENTS_SALVAGED.labels(event.event_type).inc()
                    return lean, data
                reason = f"{reason}; {len(data)} bytes even without content"
        self._bury(event, b"", reason)
        return None

    def _bury(self, event: Event, payload: bytes, reason: str) -> None:
        try:
            subject = event.subject()
        except Exception:
            subject = event.event_type
        self._bury_row((subject, event.event_id, payload, event.event_type), reason)

    def _bury_row(self, row: SpoolRow, reason: str) -> None:
        log.error("dead-lettering event %s (%s): %s", row[1], row[3], reason)
        self._spool.bury(row, reason)
        EVENTS_DEAD_LETTERED.labels(row[3]).inc()

    def _limit(self) -> int:
        assert self._nc is not None
        return int(self._nc.max_payload) - _HEADROOM

    async def _fit(self, js: JetStreamContext, event: Event, data: bytes) -> Item | None:
        """The event and its JSON within the payload limit: content offloaded when too large,
        then stripped; None when it was dead-lettered. Object-store errors propagate (transient)."""
        limit = self._limit()
        if len(data) <= limit:
            return event, data
        if isinstance(event, LlmRequestFinished) and not event.content_ref:
            lean = await offload_content(js, event, limit + _HEADROOM)
            lean_data = lean.to_json()
            if len(lean_data) <= limit:
                return lean, lean_data
        return self._salvage(event, f"{len(data)} bytes, over the {limit}-byte limit", limit)

    def _spool_items(self, items: list[Item]) -> tuple[int, int] | None:
        """Append to the spool; returns the rows' (first, last) seq."""
        seqs = self._spool.append(
            [(e.subject(), e.event_id, data, e.event_type) for e, data in items]
        )
        for e, _ in items:
            EVENTS_SPOOLED.labels(e.event_type).inc()
        SPOOL_DEPTH.set(len(self._spool))
        return seqs

    def _take_inflight(self) -> list[Item]:
        """The batch in flight, unless it is already on disk (written ahead)."""
        items, self._inflight = self._inflight, []
        written, self._inflight_seqs = self._inflight_seqs, None
        self._keep_written_ahead = False
        return [] if written is not None else items

    def _take_queued(self, limit: int | None = None) -> list[Item]:
        n = len(self._queue) if limit is None else min(limit, len(self._queue))
        items = [self._queue.popleft()[1] for _ in range(n)]
        QUEUE_DEPTH.set(len(self._queue))
        return items

    def _spool_rest(self, items: list[Item]) -> None:
        """Spool what is left of the batch in flight (unless it is already on disk)."""
        if self._inflight_seqs is not None:
            self._keep_written_ahead = True
        else:
            self._spool_items(items)

    # -- write-ahead: what a crash can lose is bounded by time ---------------
    def write_ahead(self, now: float | None = None) -> int:
        """Spool what has been in memory longer than `write_ahead_ms`; returns how many.

        The batch in flight is written first (it is older than anything queued) and
        stays in flight; everything queued moves to the spool, behind it.
        """
        if self._write_ahead_s is None:
            return 0
        now = time.monotonic() if now is None else now
        cutoff = now - self._write_ahead_s
        queue_old = bool(self._queue) and self._queue[0][0] < cutoff
        written = 0
        if (
            self._inflight
            and self._inflight_seqs is None
            and (queue_old or self._inflight_since < cutoff)
        ):
            self._inflight_seqs = self._spool_items(self._inflight)
            written += len(self._inflight)
        if queue_old:
            items = self._take_queued()
            self._spool_items(items)
            written += len(items)
        return written

    async def _write_ahead_forever(self) -> None:
        assert self._write_ahead_s is not None
        period = self._write_ahead_s / 4
        while True:
            await asyncio.sleep(period)
            try:
                n = self.write_ahead()
            except Exception:
                log.exception("writing events ahead to the spool failed")
                continue
            if n:
                log.warning("NATS slow or unreachable: %d events written ahead to the spool", n)

    # -- the publishing task -------------------------------------------------
    async def _connect_forever(self) -> None:
        delay = 0.2
        while self._nc is None:
            try:
                self._nc = await connect_nats(self._url, self._name)
                self._js = self._nc.jetstream(timeout=self._ack_timeout)
                log.info("publisher connected to NATS")
            except Exception as exc:
                log.warning(
                    "NATS unreachable (%s); events are spooled to %s", exc, self._spool.path
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _supervise(self) -> None:
        """Run the publishing loop; when it fails, keep its batch and restart it with backoff."""
        delay = 0.1
        while True:
            self._running = True
            try:
                await self._run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._running = False
                self._restarts += 1
                self._last_error = f"{type(exc).__name__}: {exc}"[:300]
                PUBLISHER_RESTARTS.inc()
                log.exception("event publisher failed; restarting in %.1f s", delay)
                held = self._take_inflight()  # [] when it is already on disk
                if held:
                    with contextlib.suppress(Exception):
                        self._spool_items(held)
                        held = []
                self._inflight = held  # kept in memory when even the disk refused them
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _run(self) -> None:
        while True:
            if self._inflight:
                events = self._inflight
            elif len(self._spool) and self.connected:
                if not await self._replay_spool():
                    await asyncio.sleep(0.5)
                continue
            else:
                if not self._queue:
                    self._wakeup.clear()
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), 0.5)
                    except TimeoutError:
                        if not self._queue and not len(self._spool):
                            self._idle.set()
                        continue
                    # Written ahead while waiting: the spool has them now.
                    if not self._queue:
                        continue
                events = self._take_queued(self._batch)
                self._inflight = events
                self._inflight_since = time.monotonic()
            if len(self._spool) and self._inflight_seqs is not None:
                pass  # written ahead: replaying the spool publishes it, in order
            elif len(self._spool) or not self.connected:
                self._spool_items(events)
            else:
                await self._publish_in_order(events)
                seqs = self._inflight_seqs
                if seqs is not None and not self._keep_written_ahead:
                    # Published after all: the copy written ahead is not needed.
                    self._spool.delete_range(*seqs)
                    SPOOL_DEPTH.set(len(self._spool))
            self._inflight = []
            self._inflight_seqs = None
            self._keep_written_ahead = False
            if not self._queue and not len(self._spool):
                self._idle.set()

    async def _publish_in_order(self, items: list[Item]) -> None:
        """Publish a batch pipelined. A permanent failure dead-letters that one event; a
        transient one spools it and everything after it."""
        assert self._js is not None
        js = self._js
        prepared: list[Item] = []
        for i, (event, data) in enumerate(items):
            try:
                fitted = await self._fit(js, event, data)
            except Exception as exc:
                log.warning("could not offload content (%s); spooling %d events", exc, len(items))
                self._spool_rest([*prepared, *items[i:]])
                return
            if fitted is not None:
                prepared.append(fitted)
        results = await asyncio.gather(
            *(publish_event(js, e, self._ack_timeout, data) for e, data in prepared),
            return_exceptions=True,
        )
        for i, res in enumerate(results):
            event, data = prepared[i]
            if res is None:
                EVENTS_PUBLISHED.labels(event.event_type).inc()
            elif is_permanent(res):
                self._bury(event, data, f"{type(res).__name__}: {res}")
            else:
                log.warning("publish failed (%s); spooling %d events", res, len(prepared) - i)
                self._spool_rest(prepared[i:])
                return

    async def _fit_spooled(self, js: JetStreamContext, row: SpoolRow) -> SpoolRow | None:
        """A spooled row within the payload limit, or None once it is dead-lettered."""
        subject, _msg_id, payload, event_type = row
        if len(payload) <= self._limit():
            return row
        try:
            event: Event = decode(subject, payload)
        except EventDecodeError as exc:
            self._bury_row(row, f"oversized and undecodable: {exc}")
            return None
        fitted = await self._fit(js, event, payload)
        if fitted is None:
            return None
        return (fitted[0].subject(), fitted[0].event_id, fitted[1], event_type)

    async def _replay_spool(self) -> bool:
        """Publish the oldest spooled rows; True when all of them went (or were dead-lettered).

        A permanent failure dead-letters its row and replay moves on; a transient one stops
        here, keeping that row and everything after it for the next attempt.
        """
        assert self._js is not None
        js = self._js
        rows = self._spool.peek(self._batch)
        ready: list[tuple[int, SpoolRow | None]] = []
        try:
            for seq, subject, msg_id, payload, etype in rows:
                ready.append((seq, await self._fit_spooled(js, (subject, msg_id, payload, etype))))
        except Exception as exc:
            log.warning("replay paused: %s", exc)
        results = iter(
            await asyncio.gather(
                *(
                    js.publish(
                        row[0],
                        row[2],
                        timeout=self._ack_timeout,
                        headers={"Nats-Msg-Id": row[1], names.HDR_EVENT_TYPE: row[3]},
                    )
                    for _, row in ready
                    if row is not None
                ),
                return_exceptions=True,
            )
        )
        done_through = None
        for seq, row in ready:
            if row is not None:
                res = next(results)
                if isinstance(res, BaseException):
                    if not is_permanent(res):
                        break
                    self._bury_row(row, f"{type(res).__name__}: {res}")
                else:
                    EVENTS_PUBLISHED.labels(row[3]).inc()
            done_through = seq
        if done_through is not None:
            self._spool.delete_through(done_through)
            SPOOL_DEPTH.set(len(self._spool))
        if done_through is None or done_through != rows[-1][0]:
            return False
        log.info("replayed %d spooled events (%d left)", len(rows), len(self._spool))
        return True
