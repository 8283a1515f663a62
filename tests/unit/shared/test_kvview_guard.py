"""KvView's guard: a watch that stops delivering without an error is started again.

Fakes stand in for JetStream: the first watch delivers the bucket's contents and then
nothing (its consumer is gone), while the bucket moves on. What a real cluster does to a
watch when a node dies is in the fault suite (`./just chaos`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from nats.js.kv import KV_DEL
from pydantic import BaseModel

from tollgate_shared.kvview import KvView


class Value(BaseModel):
    n: int


@dataclass
class Entry:
    key: str
    value: bytes | None
    revision: int
    operation: str | None = None


class Watcher:
    def __init__(self, entries: list[Entry]) -> None:
        self._entries = entries
        self.stopped = False

    async def stop(self) -> None:
        self.stopped = True

    def __aiter__(self) -> AsyncIterator[Entry | None]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Entry | None]:
        for entry in self._entries:
            yield entry
        yield None
        while True:  # a stalled watch: nothing more, ever
            await asyncio.sleep(3600)


class Bucket:
    """The bucket's latest entry per key and its last sequence."""

    def __init__(self) -> None:
        self.last: dict[str, Entry] = {}
        self.seq = 0
        self.watches: list[Watcher] = []

    def put(self, key: str, n: int) -> None:
        self.seq += 1
        self.last[key] = Entry(key, Value(n=n).model_dump_json().encode(), self.seq)

    def delete(self, key: str) -> None:
        self.seq += 1
        self.last[key] = Entry(key, None, self.seq, KV_DEL)

    async def watchall(self) -> Watcher:
        watcher = Watcher(sorted(self.last.values(), key=lambda e: e.revision))
        self.watches.append(watcher)
        return watcher


class Js:
    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket

    async def key_value(self, _name: str) -> Bucket:
        return self.bucket

    async def stream_info(self, _name: str) -> Any:
        @dataclass
        class State:
            last_seq: int

        @dataclass
        class Info:
            state: State

        return Info(State(self.bucket.seq))


async def test_a_stalled_watch_is_restarted_with_what_changed_meanwhile() -> None:
    bucket = Bucket()
    bucket.put("a", 1)
    bucket.put("gone", 2)
    changes: list[tuple[str, Value | None]] = []
    view = KvView("b", Value, on_change=lambda k, v: changes.append((k, v)), check_s=0.05)
    await view.start(Js(bucket), ready_timeout=1)  # type: ignore[arg-type]
    assert {k: v.n for k, v in view.items().items()} == {"a": 1, "gone": 2}
    assert view.revision == 2

    # The bucket moves on; the first watch delivers none of it.
    bucket.put("new", 3)
    bucket.delete("gone")
    for _ in range(100):
        await asyncio.sleep(0.02)
        if view.restarts:
            break
    await asyncio.sleep(0.05)
    try:
        assert view.restarts == 1
        assert bucket.watches[0].stopped
        assert {k: v.n for k, v in view.items().items()} == {"a": 1, "new": 3}
        assert view.revision == 4
        assert ("gone", None) in changes
        # Caught up: the guard leaves a current watch alone.
        await asyncio.sleep(0.3)
        assert view.restarts == 1
    finally:
        await view.stop()


async def test_a_watch_that_keeps_up_is_never_restarted() -> None:
    bucket = Bucket()
    bucket.put("a", 1)
    view = KvView("b", Value, check_s=0.02)
    await view.start(Js(bucket), ready_timeout=1)  # type: ignore[arg-type]
    try:
        await asyncio.sleep(0.2)
        assert view.restarts == 0
        assert len(bucket.watches) == 1
    finally:
        await view.stop()


async def test_a_key_deleted_while_no_watch_delivered_is_dropped_on_restart() -> None:
    """A delete whose marker was purged from the bucket still removes the key."""
    bucket = Bucket()
    bucket.put("a", 1)
    bucket.put("b", 2)
    view = KvView("b", Value, check_s=0.05)
    await view.start(Js(bucket), ready_timeout=1)  # type: ignore[arg-type]
    try:
        del bucket.last["b"]  # purged: no marker left to deliver
        bucket.seq += 1
        for _ in range(100):
            await asyncio.sleep(0.02)
            if view.restarts and view.get("b") is None:
                break
        assert view.get("b") is None
        assert view.get("a") == Value(n=1)
    finally:
        await view.stop()
