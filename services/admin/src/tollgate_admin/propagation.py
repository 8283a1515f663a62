"""Carries committed changes out of PostgreSQL: the KV buckets ingress watches, and the
outbox relay that publishes `admin.*` events to JetStream.

PostgreSQL is the truth. A KV write that fails after commit marks the buckets for a full
resync (retried in the background until it succeeds); an event that cannot be published
stays in the outbox table and is retried, so no audit event is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
from nats.js import JetStreamContext
from nats.js.errors import (
    KeyDeletedError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoKeysError,
)
from nats.js.kv import KeyValue
from prometheus_client import Counter, Gauge
from pydantic import BaseModel

from tollgate_admin import store, views
from tollgate_shared import names
from tollgate_shared.events import AdminChanged
from tollgate_shared.publishing import publish_event
from tollgate_shared.state import SpendState, spend_kv_key
from tollgate_shared.vocabulary import SpendEntity

log = logging.getLogger(__name__)

KV_WRITES = Counter("tollgate_admin_kv_writes_total", "KV puts and deletes", ["bucket", "op"])
KV_FAILURES = Counter("tollgate_admin_kv_failures_total", "KV writes that failed", ["bucket"])
RESYNCS = Counter("tollgate_admin_kv_resyncs_total", "Full KV resyncs from PostgreSQL")
OUTBOX_DEPTH = Gauge("tollgate_admin_outbox_depth", "Admin events waiting to be published")
EVENTS_RELAYED = Counter("tollgate_admin_events_published_total", "Admin events published")


@dataclass(frozen=True)
class KvOp:
    """Put `value` at `key` in `bucket`, or delete the key when `value` is None."""

    bucket: str
    key: str
    value: BaseModel | None


async def _revision(kv: KeyValue, key: str) -> int:
    """The key's last revision (its delete marker's when deleted), 0 when never written."""
    try:
        entry = await kv.get(key)
    except KeyDeletedError as exc:
        return int(exc.entry.revision or 0) if exc.entry is not None else 0
    except KeyNotFoundError:
        return 0
    return int(entry.revision or 0)


class KvState:
    """The admin-owned KV buckets: keys, teams, users, models."""

    BUCKETS = (names.KV_KEYS, names.KV_TEAMS, names.KV_USERS, names.KV_MODELS)

    def __init__(self, js: JetStreamContext, *, prune: bool = True) -> None:
        self._js = js
        self._prune = prune
        self._kv: dict[str, KeyValue] = {}
        self.needs_resync = False
        self._repair: asyncio.Task[None] | None = None

    async def open(self) -> None:
        for bucket in self.BUCKETS:
            self._kv[bucket] = await self._js.key_value(bucket)
        # The ledger's spend totals are only shown beside keys, teams and users.
        with contextlib.suppress(Exception):
            self._kv[names.KV_SPEND] = await self._js.key_value(names.KV_SPEND)

    async def apply(self, ops: Sequence[KvOp], pool: asyncpg.Pool) -> bool:
        """Write `ops` in order; on failure schedule a full resync. True when all landed."""
        for op in ops:
            try:
                await self._write(op)
            except Exception as exc:
                KV_FAILURES.labels(op.bucket).inc()
                log.warning(
                    "KV %s/%s not written (%s); resyncing from PostgreSQL", op.bucket, op.key, exc
                )
                self.schedule_repair(pool)
                return False
        return True

    async def _write(self, op: KvOp) -> None:
        kv = self._kv[op.bucket]
        if op.value is None:
            with contextlib.suppress(NoKeysError):
                await kv.delete(op.key)
            KV_WRITES.labels(op.bucket, "delete").inc()
        else:
            # Written on the revision last seen: when another replica wrote the key in
            # between, the write is refused and the caller resyncs from PostgreSQL (the
            # truth) instead of overwriting a newer value with this one.
            last = await _revision(kv, op.key)
            try:
                await kv.update(op.key, op.value.model_dump_json().encode(), last=last)
            except KeyWrongLastSequenceError as exc:
                raise RuntimeError(
                    f"{op.bucket}/{op.key} changed concurrently (expected revision {last})"
                ) from exc
            KV_WRITES.labels(op.bucket, "put").inc()

    async def spend(self, entity: SpendEntity, entity_id: str) -> float:
        """The ledger's spend total for display (0 when unknown); never raises."""
        bucket = self._kv.get(names.KV_SPEND)
        if bucket is None:
            return 0.0
        try:
            entry = await bucket.get(spend_kv_key(entity, entity_id))
        except Exception:
            return 0.0
        if not entry.value:
            return 0.0
        try:
            return float(SpendState.model_validate_json(entry.value).spend)
        except ValueError:
            return 0.0

    def schedule_repair(self, pool: asyncpg.Pool) -> None:
        self.needs_resync = True
        if self._repair is None or self._repair.done():
            self._repair = asyncio.create_task(self._repair_forever(pool), name="kv-repair")

    async def _repair_forever(self, pool: asyncpg.Pool) -> None:
        delay = 0.5
        while self.needs_resync:
            await asyncio.sleep(delay)
            try:
                await self.resync(pool)
            except Exception as exc:
                log.warning("KV resync failed (%s); retrying in %.1fs", exc, delay)
                delay = min(delay * 2, 10.0)

    async def close(self) -> None:
        if self._repair is not None:
            self._repair.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._repair

    async def resync(self, pool: asyncpg.Pool) -> dict[str, int]:
        """Make every admin bucket equal PostgreSQL: put each row, delete what is not a row
        (the deletion only when `prune` is on)."""
        self.needs_resync = False
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            keys = await store.all_keys(conn)
            teams = await store.all_teams(conn)
            memberships = await store.all_memberships(conn)
            team_callbacks = await store.all_callbacks(conn)
            users = await store.all_users(conn)
            models = await store.all_models(conn)
        members_by_team: dict[str, list[store.Row]] = {}
        teams_by_user: dict[str, list[str]] = {}
        for m in memberships:
            members_by_team.setdefault(m["team_id"], []).append(m)
            teams_by_user.setdefault(m["user_id"], []).append(m["team_id"])
        callbacks_by_team: dict[str, list[store.Row]] = {}
        for c in team_callbacks:
            callbacks_by_team.setdefault(c["team_id"], []).append(c)
        wanted: dict[str, dict[str, BaseModel]] = {
            names.KV_KEYS: {r["token"]: views.key_state(r) for r in keys},
            names.KV_TEAMS: {
                r["team_id"]: views.team_state(
                    r,
                    members_by_team.get(r["team_id"], []),
                    callbacks_by_team.get(r["team_id"], []),
                )
                for r in teams
            },
            names.KV_USERS: {
                r["user_id"]: views.user_state(r, sorted(teams_by_user.get(r["user_id"], [])))
                for r in users
            },
            names.KV_MODELS: {r["model_id"]: views.model_state(r) for r in models},
        }
        counts: dict[str, int] = {}
        for bucket, entries in wanted.items():
            kv = self._kv[bucket]
            for key, value in entries.items():
                await kv.put(key, value.model_dump_json().encode())
            if self._prune:
                try:
                    present = set(await kv.keys())
                except NoKeysError:
                    present = set()
                for stale in present - set(entries):
                    await kv.delete(stale)
            counts[bucket] = len(entries)
        RESYNCS.inc()
        log.info("KV resynced from PostgreSQL: %s", counts)
        return counts


class OutboxRelay:
    """Publishes outbox rows in order and deletes them once JetStream has acknowledged."""

    def __init__(self, pool: asyncpg.Pool, js: JetStreamContext, interval_s: float = 1.0) -> None:
        self._pool = pool
        self._js = js
        self._interval = interval_s
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def flush(self) -> int:
        """Publish everything pending now; returns how many were published. Never raises."""
        try:
            async with self._lock:
                return await self._publish_pending()
        except Exception as exc:
            log.warning("outbox relay: %s; events stay queued", exc)
            return 0

    async def _publish_pending(self, batch: int = 100) -> int:
        published = 0
        while True:
            failure: Exception | None = None
            async with self._pool.acquire() as conn, conn.transaction():
                rows = await store.claim_outbox(conn, batch)
                if not rows:
                    OUTBOX_DEPTH.set(0)
                    return published
                done: list[int] = []
                for row in rows:
                    try:
                        event = AdminChanged.model_validate_json(row["payload"])
                        await publish_event(self._js, event)
                    except Exception as exc:
                        failure = exc
                        break
                    done.append(row["seq"])
                # Keep what was acknowledged even when a later publish failed.
                if done:
                    await store.delete_outbox(conn, done)
                    EVENTS_RELAYED.inc(len(done))
                OUTBOX_DEPTH.set(await store.outbox_depth(conn))
            published += len(done)
            if failure is not None:
                raise failure

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()
