"""Publishes events off the response path: an in-memory queue, JetStream, and a disk spool.

`EventPublisher.emit()` never blocks and never raises. A background task
publishes in order with `Nats-Msg-Id` set to the event id (so JetStream drops
duplicates). While NATS is unreachable, events go to the on-disk spool; when it
returns, the spool is replayed in order before anything newer is published.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from prometheus_client import Counter, Gauge

from tollgate_shared import names
from tollgate_shared.events import Event, LlmRequestFinished
from tollgate_shared.spool import Spool

log = logging.getLogger(__name__)

EVENTS_PUBLISHED = Counter(
    "tollgate_events_published_total", "Events acknowledged by JetStream", ["event_type"]
)
EVENTS_SPOOLED = Counter(
    "tollgate_events_spooled_total", "Events written to the disk spool", ["event_type"]
)
SPOOL_DEPTH = Gauge("tollgate_spool_depth", "Events waiting in the disk spool")
QUEUE_DEPTH = Gauge("tollgate_publish_queue_depth", "Events waiting in memory to be published")

_HEADROOM = 4096  # room for headers and protocol framing within max_payload


def msg_headers(event: Event) -> dict[str, str]:
    return {"Nats-Msg-Id": event.event_id, names.HDR_EVENT_TYPE: event.event_type}


async def connect_nats(url: str, name: str, **kwargs: Any) -> NATS:
    """Connect with unlimited reconnects (the client buffers while reconnecting)."""
    return await nats.connect(
        url,
        name=name,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=2,
        **kwargs,
    )


async def publish_event(
    js: JetStreamContext, event: Event, timeout: float = 5.0, payload: bytes | None = None
) -> None:
    """Publish one event and wait for JetStream's ack: the single publish path.

    `payload` is the event's JSON when the caller already has it.
    """
    data = event.to_json() if payload is None else payload
    await js.publish(event.subject(), data, timeout=timeout, headers=msg_headers(event))


async def offload_content(js: JetStreamContext, event: LlmRequestFinished) -> LlmRequestFinished:
    """Move an oversized event's content to the object store and carry a reference."""
    obj = await js.object_store(names.OBJ_BODIES)
    body = event.model_dump_json(include={"messages", "response", "proxy_server_request"})
    await obj.put(event.event_id, body.encode())
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
    import json

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
    ) -> None:
        self._url = nats_url
        self._name = client_name
        self._spool = Spool(spool_path)
        self._queue: asyncio.Queue[Event] = asyncio.Queue(max_queue)
        self._batch = batch
        self._ack_timeout = ack_timeout
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._idle = asyncio.Event()
        self._idle.set()
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

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._connect_forever(), name="publisher-connect"),
            asyncio.create_task(self._run(), name="publisher-run"),
        ]

    def emit(self, event: Event) -> None:
        """Queue an event for publishing; never blocks the caller, never loses it."""
        self._idle.clear()
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            # Memory is bounded: past it, go straight to disk (still in order,
            # because the worker drains the spool before the queue).
            self._spool_events([event])
        QUEUE_DEPTH.set(self._queue.qsize())

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
        # Whatever is still in memory is kept on disk for the next start.
        leftover: list[Event] = []
        while not self._queue.empty():
            leftover.append(self._queue.get_nowait())
        if leftover:
            self._spool_events(leftover)
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.drain()
        self._spool.close()

    # -- internals ---------------------------------------------------------
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

    def _spool_events(self, events: list[Event]) -> None:
        self._spool.append([(e.subject(), e.event_id, e.to_json(), e.event_type) for e in events])
        for e in events:
            EVENTS_SPOOLED.labels(e.event_type).inc()
        SPOOL_DEPTH.set(len(self._spool))

    async def _run(self) -> None:
        while True:
            if len(self._spool) and self.connected:
                if not await self._replay_spool():
                    await asyncio.sleep(0.5)
                continue
            try:
                first = await asyncio.wait_for(self._queue.get(), 0.5)
            except TimeoutError:
                if self._queue.empty() and not len(self._spool):
                    self._idle.set()
                continue
            events = [first]
            while len(events) < self._batch and not self._queue.empty():
                events.append(self._queue.get_nowait())
            QUEUE_DEPTH.set(self._queue.qsize())
            if len(self._spool) or not self.connected:
                self._spool_events(events)
            else:
                await self._publish_in_order(events)
            if self._queue.empty() and not len(self._spool):
                self._idle.set()

    async def _publish_in_order(self, events: list[Event]) -> None:
        """Publish a batch pipelined; on the first failure spool it and everything after."""
        assert self._js is not None
        js = self._js
        prepared: list[tuple[Event, bytes]] = []
        for e in events:
            prepared.append(await self._fit(js, e))
        results = await asyncio.gather(
            *(publish_event(js, e, self._ack_timeout, data) for e, data in prepared),
            return_exceptions=True,
        )
        for i, res in enumerate(results):
            if isinstance(res, BaseException):
                log.warning("publish failed (%s); spooling %d events", res, len(prepared) - i)
                self._spool_events([e for e, _ in prepared[i:]])
                return
            EVENTS_PUBLISHED.labels(prepared[i][0].event_type).inc()

    async def _fit(self, js: JetStreamContext, event: Event) -> tuple[Event, bytes]:
        """The event and its JSON (serialized once), its content offloaded when too large."""
        assert self._nc is not None
        data = event.to_json()
        limit = self._nc.max_payload - _HEADROOM
        if isinstance(event, LlmRequestFinished) and len(data) > limit:
            try:
                lean = await offload_content(js, event)
            except Exception:
                log.exception("could not offload content of %s", event.event_id)
            else:
                return lean, lean.to_json()
        return event, data

    async def _replay_spool(self) -> bool:
        assert self._js is not None
        rows = self._spool.peek(self._batch)
        results = await asyncio.gather(
            *(
                self._js.publish(
                    subject,
                    payload,
                    timeout=self._ack_timeout,
                    headers={"Nats-Msg-Id": msg_id, names.HDR_EVENT_TYPE: etype},
                )
                for _, subject, msg_id, payload, etype in rows
            ),
            return_exceptions=True,
        )
        done_through = None
        for (seq, *_rest, etype), res in zip(rows, results, strict=True):
            if isinstance(res, BaseException):
                break
            done_through = seq
            EVENTS_PUBLISHED.labels(etype).inc()
        if done_through is not None:
            self._spool.delete_through(done_through)
            SPOOL_DEPTH.set(len(self._spool))
        if done_through is None or done_through != rows[-1][0]:
            return False
        log.info("replayed %d spooled events (%d left)", len(rows), len(self._spool))
        return True
