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
    """

    def __init__(
        self,
        bucket: str,
        model: type[M],
        on_change: Callable[[str, M | None], None] | None = None,
        opener: Callable[[M], M] | None = None,
    ) -> None:
        self.bucket = bucket
        self._model = model
        # Applied to each value as it arrives (e.g. opening sealed credentials).
        self._opener = opener
        self._items: dict[str, M] = {}
        self._on_change = on_change
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._watcher: Any = None

    def get(self, key: str) -> M | None:
        return self._items.get(key)

    def items(self) -> dict[str, M]:
        return self._items

    def __len__(self) -> int:
        return len(self._items)

    async def start(self, js: JetStreamContext, ready_timeout: float = 30.0) -> None:
        """Start watching and wait until the current contents are loaded."""
        self._task = asyncio.create_task(self._watch(js), name=f"kv-watch-{self.bucket}")
        await asyncio.wait_for(self.ready.wait(), ready_timeout)

    async def stop(self) -> None:
        if self._watcher is not None:
            # Unsubscribe, or a later drain() of the connection waits on it.
            with contextlib.suppress(Exception):
                await self._watcher.stop()
            self._watcher = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

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
                watcher = self._watcher = await kv.watchall()
                async for entry in watcher:
                    if entry is None:  # end of the initial values
                        self.ready.set()
                        continue
                    self._apply(entry.key, entry.value, entry.operation)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("watch on %s failed (%s); retrying", self.bucket, exc)
                await asyncio.sleep(1)
