"""A live, in-memory view of one KV bucket: initial values first, then every change."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from nats.js import JetStreamContext
from nats.js.kv import KV_DEL, KV_PURGE
from pydantic import BaseModel

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

_DELETES = (KV_DEL, KV_PURGE)


class KvView(Generic[M]):
    """Mirrors a bucket into a dict of parsed models; `ready` is set once the backlog is read.

    Readers use `get()` on the request path: no I/O. A value that does not parse
    is logged and skipped (treated as absent), never raised to a request.

    A watch can stop without an error: when the JetStream node holding its consumer dies,
    the client's one attempt to recreate it may fail while the cluster elects a leader,
    and nothing is delivered again (a key created then is refused, a revoked key still
    accepted). So a guard compares, every `check_s`, the bucket's last sequence with the
    last revision applied; a revision that existed at one check and has still not
    arrived at the next means the watch stalled, and it is started again from the
    bucket's current contents (within 2-4 s of the stall with the default `check_s`).
    """

    def __init__(
        self,
        bucket: str,
        model: type[M],
        on_change: Callable[[str, M | None], None] | None = None,
        opener: Callable[[M], M] | None = None,
        check_s: float = 2.0,
    ) -> None:
        self.bucket = bucket
        self._model = model
        # Applied to each value as it arrives (e.g. opening sealed credentials).
        self._opener = opener
        self._items: dict[str, M] = {}
        self._on_change = on_change
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._guard: asyncio.Task[None] | None = None
        self._watcher: Any = None
        # The highest bucket revision (stream sequence) applied so far.
        self.revision = 0
        self.restarts = 0
        self.check_s = check_s

    def get(self, key: str) -> M | None:
        return self._items.get(key)

    def items(self) -> dict[str, M]:
        return self._items

    def __len__(self) -> int:
        return len(self._items)

    async def start(self, js: JetStreamContext, ready_timeout: float = 30.0) -> None:
        """Start watching and wait until the current contents are loaded."""
        self._task = asyncio.create_task(self._watch(js), name=f"kv-watch-{self.bucket}")
        if self.check_s > 0:
            self._guard = asyncio.create_task(self._watch_guard(js), name=f"kv-guard-{self.bucket}")
        await asyncio.wait_for(self.ready.wait(), ready_timeout)

    async def stop(self) -> None:
        if self._guard is not None:
            self._guard.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._guard
            self._guard = None
        await self._stop_watch()

    async def _stop_watch(self) -> None:
        if self._watcher is not None:
            # Unsubscribe, or a later drain() of the connection waits on it.
            with contextlib.suppress(Exception):
                await self._watcher.stop()
            self._watcher = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _watch_guard(self, js: JetStreamContext) -> None:
        """Restart a watch that has stopped delivering (see the class's docstring)."""
        stream = f"KV_{self.bucket}"
        expected = 0  # a revision the bucket had at the last check
        while True:
            await asyncio.sleep(self.check_s)
            if expected > 0 and self.revision < expected and self.ready.is_set():
                self.restarts += 1
                log.warning(
                    "watch on %s stalled at revision %d (the bucket had %d %.0f s ago); "
                    "restarting it",
                    self.bucket,
                    self.revision,
                    expected,
                    self.check_s,
                )
                await self._stop_watch()
                self._task = asyncio.create_task(self._watch(js), name=f"kv-watch-{self.bucket}")
                expected = 0
                continue
            try:
                info = await js.stream_info(stream)
            except Exception as exc:  # NATS away: the watch's own retry covers it
                log.debug("stream info of %s failed (%s)", stream, exc)
                expected = 0
                continue
            last = info.state.last_seq or 0
            expected = last if last > self.revision else 0

    def _apply(self, key: str, value: bytes | None, op: str | None) -> None:
        if op in _DELETES or value is None:
            self._items.pop(key, None)
            parsed: M | None = None
        else:
            try:
                parsed = self._model.model_validate_json(value)
                if self._opener is not None:
                    parsed = self._opener(parsed)
            except ValueError as exc:
                log.warning("%s/%s holds an unreadable value (%s); ignored", self.bucket, key, exc)
                self._items.pop(key, None)
                parsed = None
            else:
                self._items[key] = parsed
        if self._on_change is not None:
            self._on_change(key, parsed)

    async def _watch(self, js: JetStreamContext) -> None:
        while True:
            try:
                kv = await js.key_value(self.bucket)
                # Everything up to here is in the backlog the watch starts with, even a
                # sequence whose message is gone (a purged delete marker).
                floor = (await js.stream_info(f"KV_{self.bucket}")).state.last_seq or 0
                watcher = self._watcher = await kv.watchall()
                # Keys present before this watch began: any the backlog no longer holds
                # were deleted while no watch was delivering.
                stale: set[str] | None = set(self._items)
                async for entry in watcher:
                    if entry is None:  # end of the initial values
                        for key in stale or ():
                            self._apply(key, None, KV_DEL)
                        stale = None
                        self.revision = max(self.revision, floor)
                        self.ready.set()
                        continue
                    if stale is not None:
                        stale.discard(entry.key)
                    self.revision = max(self.revision, entry.revision or 0)
                    self._apply(entry.key, entry.value, entry.operation)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("watch on %s failed (%s); retrying", self.bucket, exc)
                await asyncio.sleep(1)
