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
from collections.abc import Mapping, Sequence
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


async def _bucket_revisions(kv: KeyValue) -> dict[str, tuple[int, bool]]:
    """Every key's last revision (its delete or purge marker's when removed) and whether
    it holds a value."""
    out: dict[str, tuple[int, bool]] = {}
    watcher = await kv.watchall(meta_only=True)
    try:
        async for entry in watcher:
            if entry is None:
                break
            out[entry.key] = (int(entry.revision or 0), entry.operation not in ("DEL", "PURGE"))
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
    return out


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

    async def revisions(self, ops: Sequence[KvOp]) -> dict[tuple[str, str], int]:
        """The current revision of each key `ops` will write, read while the writing
        transaction still holds its row locks (before commit). Never raises: a key whose
        revision cannot be read is left out, and `apply` resyncs instead of writing it."""
        out: dict[tuple[str, str], int] = {}
        for op in ops:
            slot = (op.bucket, op.key)
            if slot in out:
                continue
            try:
                out[slot] = await _revision(self._kv[op.bucket], op.key)
            except Exception as exc:
                log.warning("KV %s/%s revision not read (%s)", op.bucket, op.key, exc)
        return out

    async def apply(
        self,
        ops: Sequence[KvOp],
        pool: asyncpg.Pool,
        expected: Mapping[tuple[str, str], int] | None = None,
    ) -> bool:
        """Write `ops` in order, each on the revision in `expected` (read before the
        transaction committed); on failure or a concurrent write schedule a full resync.
        True when all landed.

        Why the revision is read before commit: two writers of one row are serialised by
        PostgreSQL's row lock, so the earlier committer read its revision before the later
        one committed. Were it read after commit, a slow earlier writer would see the later
        writer's revision and overwrite the newer value with its older one.
        """
        last = dict(expected) if expected is not None else None
        for op in ops:
            slot = (op.bucket, op.key)
            try:
                if last is not None and slot not in last:
                    raise RuntimeError("its revision before commit is unknown")
                written = await self._write(op, None if last is None else last[slot])
                if last is not None:
                    last[slot] = written
            except Exception as exc:
                KV_FAILURES.labels(op.bucket).inc()
                log.warning(
                    "KV %s/%s not written (%s); resyncing from PostgreSQL", op.bucket, op.key, exc
                )
                self.schedule_repair(pool)
                return False
        return True

    async def _write(self, op: KvOp, last: int | None = None) -> int:
        """Write one op on revision `last` (read now when None); the key's new revision."""
        kv = self._kv[op.bucket]
        if last is None:
            last = await _revision(kv, op.key)
        if op.value is None:
            try:
                await kv.delete(op.key, last=last)
            except NoKeysError:
                return last
            KV_WRITES.labels(op.bucket, "delete").inc()
            return await _revision(kv, op.key)
        # Written on the revision last seen: when another replica wrote the key in between,
        # the write is refused and the caller resyncs from PostgreSQL (the truth) instead
        # of overwriting a newer value with this one.
        try:
            revision = await kv.update(op.key, op.value.model_dump_json().encode(), last=last)
        except KeyWrongLastSequenceError as exc:
            raise RuntimeError(
                f"{op.bucket}/{op.key} changed concurrently (expected revision {last})"
            ) from exc
        KV_WRITES.labels(op.bucket, "put").inc()
        return int(revision)

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
        (the deletion only when `prune` is on).

        Each key is written on the revision read before PostgreSQL's snapshot is taken: a
        request that commits after the snapshot and writes its (newer) value to the bucket
        before this resync does makes this resync's stale write fail instead of overwriting
        it. Keys refused that way are left alone and another pass is scheduled."""
        self.needs_resync = False
        seen = {bucket: await _bucket_revisions(self._kv[bucket]) for bucket in self.BUCKETS}
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
        conflicts = 0
        for bucket, entries in wanted.items():
            kv, revisions = self._kv[bucket], seen[bucket]
            for key, value in entries.items():
                try:
                    last = revisions.get(key, (0, False))[0]
                    await kv.update(key, value.model_dump_json().encode(), last=last)
                except KeyWrongLastSequenceError:
                    conflicts += 1
            if self._prune:
                live = {k for k, (_, has_value) in revisions.items() if has_value}
                for stale in live - set(entries):
                    try:
                        await kv.delete(stale, last=revisions[stale][0])
                    except Exception as exc:  # refused when written since: left for next pass
                        log.info("KV %s/%s not pruned (%s)", bucket, stale, exc)
                        conflicts += 1
            counts[bucket] = len(entries)
        RESYNCS.inc()
        log.info(
            "KV resynced from PostgreSQL: %s (%d keys written concurrently)", counts, conflicts
        )
        if conflicts:
            self.schedule_repair(pool)
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
