"""The ledger's use cases: record spend batches and admin changes, announce totals, keep
partitions, and answer the read API.

A spend batch is written in one transaction (`SpendProjection.write`); a batch the
database rejects for its data is retried one row at a time, so a single bad row is
refused and the rest still land. The service says what became of each message
(`Verdict`); the transport edge (`subscribers.py`) acks, naks or terminates it.
Committed totals are queued in the outbox in the batch's own transaction and
announced from memory at once; what an announcement missed (a crash, NATS away) is
relayed from the outbox later, also by the next ledger to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

import asyncpg
from asyncpg.exceptions._base import DataError as ClientDataError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from tollgate_ledger import metrics
from tollgate_ledger.audit import audit_row
from tollgate_ledger.budgets import BudgetBook, SpendMirror, spend_totals
from tollgate_ledger.decoding import ADMIN_CHANGE, FINISHED, MaxDeliveries, request_id_hint
from tollgate_ledger.filters import AuditFilter, SpendLogFilter
from tollgate_ledger.partitions import partitions_ahead, partitions_to_drop, retention_check_s
from tollgate_ledger.policy import LedgerPolicy
from tollgate_ledger.projections.audit import AuditProjection
from tollgate_ledger.projections.dead_letters import DeadLetter, DeadLetterProjection
from tollgate_ledger.projections.reads import LedgerReader
from tollgate_ledger.projections.retention import RetentionProjection
from tollgate_ledger.projections.spend import BatchResult, SpendProjection, TotalAfter
from tollgate_ledger.rows import SpendRow, spend_row
from tollgate_shared import names
from tollgate_shared.events import (
    AdminChanged,
    Event,
    EventDecodeError,
    LedgerDbError,
    LedgerSpendUpdated,
    LedgerTrackingFailed,
    LlmRequestFinished,
    decode,
)
from tollgate_shared.kvview import KvView
from tollgate_shared.publishing import hydrate_content, publish_event
from tollgate_shared.state import KeyState
from tollgate_shared.vocabulary import Producer

log = logging.getLogger(__name__)

PRODUCER: Producer = "ledger"

# Errors that say "this data can never be written" rather than "the database is unwell".
DATA_ERRORS: tuple[type[BaseException], ...] = (
    ClientDataError,  # a value asyncpg cannot encode for its column
    OverflowError,  # ... or one too large for it
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.UntranslatableCharacterError,
)
DB_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)
# What the read API answers with 503 "database unavailable" rather than 500.
DB_UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    OSError,
    asyncpg.InterfaceError,
)
# How often the outbox is swept for totals an announcement missed, and how old such a
# total must be (younger ones are still on their way from memory).
RELAY_EVERY_S = 5.0
# The least time between two announcements of committed totals (see Announcer).
ANNOUNCE_EVERY_S = 0.1
# Building a batch's rows hands the loop back this often (see subscribers.YIELD_EVERY).
YIELD_EVERY = 20

Publish = Callable[[Event], Awaitable[None]]
M = TypeVar("M")  # the transport's message handle, carried through untouched


def js_publisher(js: JetStreamContext) -> Publish:
    """Publishes an event to JetStream; raises when it could not."""

    async def publish(event: Event) -> None:
        await publish_event(js, event)

    return publish


async def _tell(publish: Publish | None, event: Event) -> None:
    """Publish a report (tracking failure, db error); failing to is logged, never raised."""
    if publish is None:
        return
    try:
        await publish(event)
    except Exception as exc:
        log.warning("could not publish %s: %s", event.event_type, exc)


class Fate(enum.Enum):
    RECORDED = "recorded"  # committed (or skipped by policy): ack
    REFUSED = "refused"  # can never be recorded: terminate
    RETRY = "retry"  # not now (database unwell, content unreachable): nak with backoff


@dataclass(frozen=True)
class Verdict:
    fate: Fate
    reason: str = ""
    request_id: str | None = None


RECORDED = Verdict(Fate.RECORDED)
RETRY = Verdict(Fate.RETRY)


# --- announcing totals ------------------------------------------------------------------


@dataclass
class Announcer:
    """Publishes `ledger.spend.updated.v1` and mirrors totals to KV for ingress's budgets.

    Committed totals are announced from memory right after the commit; each one
    announced is then taken out of the outbox (`spend_announcements`), where the batch
    queued it. Under load, announcements go out at most every `every_s`: the totals of
    the batches committed meanwhile go together, each entity once with its latest total
    (an entity's total moves on with every batch, so announcing each would cost one KV
    write per entity per batch). `relay_forever` announces what is left in the outbox:
    a total whose announcement failed, or that a ledger which died after its commit
    never sent.
    """

    pool: asyncpg.Pool | None
    projection: SpendProjection
    budgets: BudgetBook | None = None
    mirror: SpendMirror | None = None
    publish: Publish | None = None
    every_s: float = ANNOUNCE_EVERY_S

    def __post_init__(self) -> None:
        # Totals committed but not yet announced, newest per entity (totals are absolute,
        # so a newer one supersedes an older one and the backlog stays bounded).
        self._pending: dict[tuple[str, str], TotalAfter] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def queue(self, totals: Sequence[TotalAfter]) -> None:
        """Hand committed totals to the announcer; the caller does not wait for it."""
        if not totals:
            return
        for t in totals:
            key = (t.entity, t.entity_id)
            held = self._pending.get(key)
            # Two batches committing side by side may hand theirs over in either order:
            # an entity's total only moves forward (more spend, or a later period).
            if held is None or _total_order(t) >= _total_order(held):
                self._pending[key] = t
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._announce_forever())
        self._wake.set()

    async def queue_totals(self, totals: list[TotalAfter]) -> None:
        """`queue`, for callers that await (the budget-period reset job)."""
        self.queue(totals)

    async def _announce_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.announce()
            await asyncio.sleep(self.every_s)

    async def announce(self) -> None:
        """Announce what is pending in memory."""
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        await self._announce(list(pending.values()))

    async def relay(self, older_than_s: float = 0.0, batch: int = 1000) -> int:
        """Announce the outbox's totals queued at least `older_than_s` ago; returns how many."""
        if self.pool is None:
            return 0
        relayed = 0
        while True:
            async with self.pool.acquire() as conn:
                queued = await self.projection.queued_totals(
                    conn, older_than_s=older_than_s, limit=batch
                )
            if not queued:
                return relayed
            done = await self._announce(queued)
            relayed += len(done)
            if len(queued) < batch or len(done) < len(queued):
                return relayed

    async def relay_forever(self, every_s: float = RELAY_EVERY_S) -> None:
        """At start, everything the outbox holds; then what announcements missed."""
        older_than = 0.0
        while True:
            try:
                relayed = await self.relay(older_than)
                if relayed:
                    log.info("relayed %d spend totals from the outbox", relayed)
            except Exception as exc:
                log.warning("relaying spend totals failed: %s", exc)
            older_than = every_s
            await asyncio.sleep(every_s)

    async def _announce(self, committed: list[TotalAfter]) -> list[TotalAfter]:
        """Publish and mirror `committed`; forget from the outbox what went out."""
        totals = spend_totals(committed, self.budgets)
        try:
            if self.publish is not None:
                await self.publish(LedgerSpendUpdated(producer=PRODUCER, totals=totals))
            missed = set()
            if self.mirror is not None:
                missed = {(t.entity, t.entity_id) for t in await self.mirror.write(totals)}
        except Exception:
            log.exception("announcing %d spend totals failed; they stay queued", len(totals))
            return []
        done = [t for t in committed if (t.entity, t.entity_id) not in missed]
        if self.pool is not None and done:
            try:
                async with self.pool.acquire() as conn:
                    await self.projection.forget_announced(conn, done)
            except Exception as exc:  # they are announced again later: harmless
                log.warning("could not clear %d announced totals: %s", len(done), exc)
        return done

    async def stop(self) -> None:
        """Announce what is pending, then stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.announce()


def _total_order(t: TotalAfter) -> tuple[datetime, Decimal]:
    """Which of two totals of an entity is the later: a later period, or more spend in it."""
    return (t.period_start or datetime.min.replace(tzinfo=UTC), t.spend)


# --- spend ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpendBatch(Generic[M]):
    """A prepared batch waiting for its transaction: each live message with its row."""

    ready: list[tuple[M, SpendRow]]
    later: list[M]
    prepare_s: float


@dataclass
class SpendService:
    """Completed/failed LLM calls into spend logs, sessions, aggregates and totals."""

    consumer: str  # the durable's name, for metrics
    js: JetStreamContext
    pool: asyncpg.Pool
    projection: SpendProjection
    policy: LedgerPolicy
    announcer: Announcer | None = None
    publish: Publish | None = None

    @property
    def reads_content(self) -> bool:
        """Whether events must be decoded with their content (only when it is stored)."""
        return self.policy.store_prompts

    async def prepare(
        self, events: list[tuple[M, LlmRequestFinished]], *, received: int, started: float
    ) -> SpendBatch[M]:
        """Rows of a decoded batch, fetching offloaded content where it will be stored."""
        metrics.BATCH_SIZE.labels(self.consumer).observe(received)
        ready: list[tuple[M, SpendRow]] = []
        later: list[M] = []
        for i, (tag, event) in enumerate(events, 1):
            if i % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let the transaction before this batch go on
            hydrated = await self._hydrate(event) if self.policy.needs_content(event) else event
            if hydrated is None:
                later.append(tag)
            else:
                ready.append((tag, spend_row(hydrated, self.policy)))
        return SpendBatch(ready, later, time.perf_counter() - started)

    async def commit(self, batch: SpendBatch[M]) -> list[tuple[M, Verdict]]:
        """Write a prepared batch in one transaction; what became of each message."""
        t0 = time.perf_counter()
        ready = batch.ready
        if not ready:
            metrics.BATCHES.labels(self.consumer, "empty").inc()
            return []
        try:
            result = await self._write([row for _, row in ready])
        except DATA_ERRORS as exc:
            log.warning(
                "batch of %d rejected for its data (%s); writing one by one", len(ready), exc
            )
            result, verdicts = await self._write_one_by_one(ready)
        except DB_ERRORS as exc:
            await self._db_error(exc, len(ready))
            return [(tag, RETRY) for tag, _ in ready]
        else:
            verdicts = [(tag, RECORDED) for tag, _ in ready]
        metrics.BATCHES.labels(self.consumer, "committed").inc()
        metrics.BATCH_SECONDS.labels(self.consumer).observe(
            batch.prepare_s + time.perf_counter() - t0
        )
        self._count(result, len(ready))
        if self.announcer is not None:
            self.announcer.queue(result.totals)
        return verdicts

    async def untracked(self, subject: str, reason: str, request_id: str | None) -> None:
        """Report a message the ledger terminated: counted, and `ledger.tracking.failed.v1`."""
        metrics.TRACKING_FAILED.labels(self.consumer).inc()
        await _tell(
            self.publish,
            LedgerTrackingFailed(
                producer=PRODUCER, request_id=request_id, subject_name=subject, error=reason[:2000]
            ),
        )

    async def _write(self, rows: list[SpendRow]) -> BatchResult:
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                result = await self.projection.write(conn, rows)
            self.projection.remember_partitions(result.partition_days)
        return result

    async def _write_one_by_one(
        self, ready: list[tuple[M, SpendRow]]
    ) -> tuple[BatchResult, list[tuple[M, Verdict]]]:
        """Isolate the rows the database refuses; everything else still lands."""
        inserted = logs = sessions = daily = 0
        totals: dict[tuple[str, str], TotalAfter] = {}
        verdicts: list[tuple[M, Verdict]] = []
        for tag, row in ready:
            try:
                res = await self._write([row])
            except DATA_ERRORS as exc:
                reason = f"database rejected the row: {exc}"
                verdicts.append((tag, Verdict(Fate.REFUSED, reason, row.request_id)))
                continue
            except DB_ERRORS as exc:
                await self._db_error(exc, 1)
                verdicts.append((tag, RETRY))
                continue
            verdicts.append((tag, RECORDED))
            inserted += res.inserted
            logs += res.logs
            sessions += res.sessions
            daily += res.daily
            for t in res.totals:
                totals[(t.entity, t.entity_id)] = t
        return BatchResult(inserted, logs, sessions, daily, list(totals.values())), verdicts

    async def _hydrate(self, event: LlmRequestFinished) -> LlmRequestFinished | None:
        """The event with its offloaded content fetched (`policy.needs_content`); None to
        try again later."""
        try:
            return await hydrate_content(self.js, event)
        except NotFoundError:
            log.warning(
                "content %s of %s is gone from the object store; stored without it",
                event.content_ref,
                event.request_id,
            )
            return event.model_copy(update={"content_ref": None})
        except Exception as exc:
            log.warning("could not fetch content of %s (%s); will retry", event.request_id, exc)
            return None

    def _count(self, result: BatchResult, received: int) -> None:
        metrics.ROWS_WRITTEN.labels("processed_requests").inc(result.inserted)
        metrics.ROWS_WRITTEN.labels("spend_logs").inc(result.logs)
        metrics.ROWS_WRITTEN.labels("sessions").inc(result.sessions)
        metrics.ROWS_WRITTEN.labels("daily_spend").inc(result.daily)
        metrics.ROWS_WRITTEN.labels("spend_totals").inc(len(result.totals))
        metrics.DUPLICATES.labels(self.consumer).inc(max(0, received - result.inserted))

    async def _db_error(self, exc: BaseException, size: int) -> None:
        metrics.DB_ERRORS.labels(self.consumer).inc()
        metrics.BATCHES.labels(self.consumer, "db_error").inc()
        log.error("writing %d spend events failed: %s", size, exc)
        await _tell(
            self.publish,
            LedgerDbError(
                producer=PRODUCER, error=f"{type(exc).__name__}: {exc}"[:2000], batch_size=size
            ),
        )


# --- audit ------------------------------------------------------------------------------


def key_rotations(events: Sequence[AdminChanged]) -> list[tuple[str, str]]:
    """`(old hash, new hash)` of each key rotation in the batch, in order."""
    out = []
    for e in events:
        if e.entity != "key" or e.action != "rotated":
            continue
        previous = (e.updated_values or {}).get("previous_token")
        if isinstance(previous, str) and previous and previous != e.object_id:
            out.append((previous, e.object_id))
    return out


@dataclass
class AuditService:
    """Admin changes into the audit log (when `store_audit_logs`); a key rotation also
    carries the key's spend total over to its new hash (always, audit logging or not)."""

    consumer: str
    pool: asyncpg.Pool
    projection: AuditProjection
    policy: LedgerPolicy
    publish: Publish | None = None
    announcer: Announcer | None = None
    spend: SpendProjection | None = None

    def __post_init__(self) -> None:
        if self.spend is None:
            self.spend = SpendProjection(self.projection.schema)

    async def record(self, events: list[AdminChanged], *, received: int, started: float) -> Verdict:
        """Write a decoded batch in one transaction; the one verdict for all of it."""
        name = self.consumer
        metrics.BATCH_SIZE.labels(name).observe(received)
        if not events:
            metrics.BATCHES.labels(name, "empty").inc()
            return RECORDED
        rotations = key_rotations(events)
        store = self.policy.store_audit_logs
        if not store and not rotations:
            # Audit logging is off: the change is not recorded, by configuration.
            metrics.BATCHES.labels(name, "skipped").inc()
            return RECORDED
        rows = [audit_row(e) for e in events] if store else []
        assert self.spend is not None
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                inserted = await self.projection.write(conn, rows)
                moved = await self.spend.carry_over(conn, rotations)
        except DB_ERRORS as exc:
            metrics.DB_ERRORS.labels(name).inc()
            metrics.BATCHES.labels(name, "db_error").inc()
            log.error("writing %d audit rows failed: %s", len(events), exc)
            await _tell(
                self.publish,
                LedgerDbError(
                    producer=PRODUCER,
                    error=f"{type(exc).__name__}: {exc}"[:2000],
                    batch_size=len(events),
                ),
            )
            return RETRY
        if moved and self.announcer is not None:
            # Without an announcer the outbox relay announces them (RELAY_EVERY_S).
            self.announcer.queue(moved)
        metrics.ROWS_WRITTEN.labels("audit_log").inc(inserted)
        metrics.ROWS_WRITTEN.labels("spend_totals").inc(len(moved))
        metrics.DUPLICATES.labels(name).inc(len(rows) - inserted)
        metrics.BATCHES.labels(name, "committed").inc()
        metrics.BATCH_SECONDS.labels(name).observe(time.perf_counter() - started)
        return RECORDED

    def untracked(self) -> None:
        """Count a message the audit consumer terminated."""
        metrics.TRACKING_FAILED.labels(self.consumer).inc()


# --- the database breaker and dead letters ------------------------------------------------


def database_probe(pool: asyncpg.Pool) -> Callable[[], Awaitable[bool]]:
    """A probe for the consumers' breaker: the database answers and takes writes (a
    failover that left us on a read-only standby counts as down)."""

    async def probe() -> bool:
        async with pool.acquire(timeout=5) as conn:
            return bool(await conn.fetchval("SELECT NOT pg_is_in_recovery()"))

    return probe


@dataclass(frozen=True)
class ReplayReport:
    """What `replay-dead` made of the recorded dead letters."""

    recorded: int = 0
    refused: int = 0
    gone: int = 0
    retry: int = 0

    def lines(self) -> list[str]:
        return [
            f"replayed: {self.recorded} recorded, {self.refused} refused (poison), "
            f"{self.gone} gone from the stream, {self.retry} left for a later replay"
        ]


@dataclass
class DeadLetters:
    """Messages JetStream stopped delivering (its max-delivery advisory): each is recorded
    by stream sequence, reported as `ledger.tracking.failed.v1` (the alerter's
    `failed_tracking_spend`), and `replay` re-reads it from the stream and writes it
    through the same services as the consumers (idempotent: replaying twice is harmless).
    """

    pool: asyncpg.Pool
    js: JetStreamContext
    projection: DeadLetterProjection
    publish: Publish | None = None

    async def captured(self, advisory: MaxDeliveries, attempts: int = 5) -> bool:
        """Record one advisory (retried while the database is away); True if new. Raises
        the database's error when it still cannot: the advisory waits in its stream."""
        subject, request_id = await self._peek(advisory.stream, advisory.stream_seq)
        dead = DeadLetter(
            advisory.stream,
            advisory.stream_seq,
            advisory.consumer,
            advisory.deliveries,
            subject,
            request_id,
        )
        delay = 0.5
        for attempt in range(attempts):
            try:
                async with self.pool.acquire() as conn:
                    new = await self.projection.record(conn, dead)
                break
            except DB_ERRORS:
                if attempt == attempts - 1:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        if not new:
            return False
        metrics.DEAD_LETTERS.labels(advisory.consumer).inc()
        log.error(
            "%s gave up on %s #%d (%s) after %d deliveries: recorded for replay-dead",
            advisory.consumer,
            advisory.stream,
            advisory.stream_seq,
            request_id or subject,
            advisory.deliveries,
        )
        await _tell(
            self.publish,
            LedgerTrackingFailed(
                producer=PRODUCER,
                request_id=request_id,
                subject_name=subject or f"{advisory.stream}#{advisory.stream_seq}",
                error=(
                    f"{advisory.consumer}: max deliveries ({advisory.deliveries}) reached for "
                    f"{advisory.stream} sequence {advisory.stream_seq}; "
                    "replay with `python -m tollgate_ledger replay-dead`"
                ),
            ),
        )
        return True

    async def _peek(self, stream: str, seq: int) -> tuple[str | None, str | None]:
        try:
            raw = await self.js.get_msg(stream, seq)
        except Exception as exc:
            log.warning("dead letter %s #%d not readable: %s", stream, seq, exc)
            return None, None
        return raw.subject, request_id_hint(raw.data or b"")

    async def replay(
        self, spend: SpendService, audit: AuditService, *, limit: int = 10_000
    ) -> ReplayReport:
        """Re-read every pending dead letter from its stream and write it."""
        async with self.pool.acquire() as conn:
            pending = await self.projection.pending(conn, limit)
        counts = {"recorded": 0, "refused": 0, "gone": 0, "retry": 0}
        for dead in pending:
            outcome = await self._replay_one(dead, spend, audit)
            kind = outcome.split(":", 1)[0]
            counts[kind] += 1
            metrics.DEAD_LETTERS_REPLAYED.labels(kind).inc()
            if kind != "retry":
                async with self.pool.acquire() as conn:
                    await self.projection.settle(conn, dead, outcome)
        return ReplayReport(**counts)

    async def _replay_one(self, dead: DeadLetter, spend: SpendService, audit: AuditService) -> str:
        try:
            raw = await self.js.get_msg(dead.stream, dead.stream_seq)
        except NotFoundError:
            return "gone: no longer in the stream (past its max age)"
        subject, data = raw.subject or "", raw.data or b""
        try:
            if dead.stream == names.STREAM_ADMIN.name:
                admin = decode(subject, data, ADMIN_CHANGE)
                v = await audit.record([admin], received=1, started=time.perf_counter())
                return "recorded" if v.fate is Fate.RECORDED else f"retry: {v.reason}"
            event = decode(subject, data, FINISHED, content=spend.reads_content)
        except EventDecodeError as exc:
            await spend.untracked(subject, str(exc), request_id_hint(data))
            return f"refused: {exc}"
        batch = await spend.prepare([(dead, event)], received=1, started=time.perf_counter())
        if batch.later:
            return "retry: content not readable yet"
        for _, verdict in await spend.commit(batch):
            if verdict.fate is Fate.REFUSED:
                await spend.untracked(subject, verdict.reason, verdict.request_id)
                return f"refused: {verdict.reason}"
            if verdict.fate is Fate.RETRY:
                return "retry: database"
        return "recorded"


# --- partitions and retention ---------------------------------------------------------

RETENTION_JOB = "cleanup"
# Partitions must exist before traffic reaches them: checked at least this often.
PARTITIONS_EVERY_S = 3600.0


@dataclass(frozen=True)
class RetentionReport:
    """What one cleanup dropped: partitions by name, and rows per table."""

    partitions: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"partitions": self.partitions, "rows": self.rows}


@dataclass
class Retention:
    """Drops what the retention settings say is expired, on one replica at a time.

    A cleanup holds a PostgreSQL advisory lock (`pg_try_advisory_lock`) on its own
    connection from start to end: a second ledger finds it taken and skips. Each run is
    recorded (`retention_runs`: when, by whom, what it dropped) and the next one is due
    `retention_interval` after the last, whichever replica ran it and however long the
    interval. Spend-log partitions go whole days at a time; `processed_requests` (the
    idempotency record) is kept for at least `policy.idempotency_window`.
    """

    pool: asyncpg.Pool
    spend: SpendProjection
    store: RetentionProjection
    policy: LedgerPolicy
    runner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    async def run(
        self, now: datetime | None = None, *, force: bool = False
    ) -> RetentionReport | None:
        """One cleanup if it is due (or `force`); None when skipped (not due, or locked)."""
        now = now or datetime.now(UTC)
        async with self.pool.acquire() as conn:
            if not await self.store.try_lock(conn):
                log.info("retention: another ledger is running the cleanup; skipped")
                return None
            try:
                last = await self.store.last_run(conn, RETENTION_JOB)
                if not force and last is not None and last + self.policy.retention_interval > now:
                    return None
                report = await self._cleanup(conn, now)
                await self.store.record_run(conn, RETENTION_JOB, self.runner, now, report.summary())
            finally:
                await self.store.unlock(conn)
        self._tell(report)
        return report

    async def _cleanup(self, conn: asyncpg.Connection, now: datetime) -> RetentionReport:
        report = RetentionReport()
        for table, keep in (
            ("spend_logs", self.policy.retention),
            ("processed_requests", self.policy.idempotency_retention),
        ):
            if keep is None:
                continue
            existing = await self.spend.existing_partitions(conn, table)
            for name in partitions_to_drop(existing, now, keep):
                async with conn.transaction():
                    rows = await self.store.count_rows(conn, name)
                    await self.spend.drop_partitions(conn, [name])
                report.partitions.append(name)
                report.rows[table] = report.rows.get(table, 0) + rows
        for table, keep in (
            ("sessions", self.policy.session_retention),
            ("daily_spend", self.policy.daily_retention),
            ("audit_log", self.policy.audit_retention),
        ):
            if keep is None:
                continue
            cutoff: datetime | date = now - keep
            if table == "daily_spend":
                cutoff = (now - keep).date()  # whole days only
            report.rows[table] = await self.store.prune(conn, table, cutoff)
        return report

    def _tell(self, report: RetentionReport) -> None:
        for table, n in report.rows.items():
            metrics.RETENTION_DROPPED.labels(table).inc(n)
        if report.partitions:
            metrics.PARTITIONS_DROPPED.inc(len(report.partitions))
        log.info(
            "retention by %s: dropped partitions [%s]; rows %s",
            self.runner,
            ", ".join(report.partitions),
            ", ".join(f"{t}={n}" for t, n in report.rows.items()) or "none",
        )


async def maintain_partitions(
    pool: asyncpg.Pool,
    projection: SpendProjection,
    policy: LedgerPolicy,
    now: datetime | None = None,
) -> list[str]:
    """Create today's and tomorrow's partitions; then a cleanup now (under its lock)."""
    now = now or datetime.now(UTC)
    async with pool.acquire() as conn:
        async with conn.transaction():
            days = await projection.ensure_partitions(conn, partitions_ahead(now))
        projection.remember_partitions(days)
    if not policy.prunes_anything:
        return []
    retention = Retention(pool, projection, RetentionProjection(projection.schema), policy)
    report = await retention.run(now, force=True)
    return report.partitions if report is not None else []


async def partitions_forever(pool: asyncpg.Pool, projection: SpendProjection) -> None:
    """Today's and tomorrow's partitions, checked hourly."""
    while True:
        try:
            async with pool.acquire() as conn:
                async with conn.transaction():
                    days = await projection.ensure_partitions(
                        conn, partitions_ahead(datetime.now(UTC))
                    )
                projection.remember_partitions(days)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("partition maintenance failed: %s", exc)
        await asyncio.sleep(PARTITIONS_EVERY_S)


async def retention_forever(retention: Retention) -> None:
    """A cleanup whenever one is due; checked every `retention_check_s(interval)`."""
    every = retention_check_s(retention.policy.retention_interval)
    while True:
        try:
            await retention.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("retention cleanup failed: %s", exc)
        await asyncio.sleep(every)


# --- budget periods -----------------------------------------------------------------


async def reset_periods(
    pool: asyncpg.Pool,
    projection: SpendProjection,
    budgets: BudgetBook,
    now: datetime | None = None,
) -> list[TotalAfter]:
    """Begin the current budget period of every entity whose period has rolled over."""
    periods = budgets.periods(now or datetime.now(UTC))
    if not periods:
        return []
    async with pool.acquire() as conn, conn.transaction():
        return await projection.start_periods(conn, periods)


async def reset_forever(
    pool: asyncpg.Pool,
    projection: SpendProjection,
    budgets: BudgetBook,
    announce: Callable[[list[TotalAfter]], Awaitable[None]],
    every_s: float = 5.0,
) -> None:
    """Every few seconds, start the periods that began and announce the reset totals.

    Ingress already treats a total whose `budget_reset_at` has passed as spent-nothing,
    so the job's interval only delays what /key/info shows, never a refusal.
    """
    while True:
        try:
            reset = await reset_periods(pool, projection, budgets)
            if reset:
                log.info("began a new budget period for %d keys, teams or users", len(reset))
                await announce(reset)
        except Exception as exc:
            log.warning("budget period reset failed: %s", exc)
        await asyncio.sleep(every_s)


# --- reads ------------------------------------------------------------------------------


class NotReadyError(RuntimeError):
    """The read API was asked before the database was connected."""


@dataclass
class ReadService:
    """The read API's queries, each on a pooled connection; `pool` is set at start."""

    reader: LedgerReader
    pool: asyncpg.Pool | None = field(default=None)
    # Admin's live key bucket: which virtual keys may read (their own rows); set at start.
    keys: KvView[KeyState] | None = field(default=None)

    def key_may_read(self, key_hash: str) -> bool:
        """A virtual key that admin knows and has not blocked reads its own rows."""
        state = self.keys.get(key_hash) if self.keys is not None else None
        return state is not None and not state.blocked

    def _pool(self) -> asyncpg.Pool:
        if self.pool is None:
            raise NotReadyError("database not connected")
        return self.pool

    async def spend_logs(
        self,
        f: SpendLogFilter,
        *,
        limit: int,
        offset: int,
        ascending: bool = False,
        key_scope: str | None = None,
        count_limit: int | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """Spend rows matching `f`; with `key_scope` (a key hash) only that key's rows."""
        async with self._pool().acquire() as conn:
            return await self.reader.spend_logs(
                conn,
                f,
                limit=limit,
                offset=offset,
                ascending=ascending,
                key_scope=key_scope,
                count_limit=count_limit,
            )

    async def spend_summary(
        self, f: SpendLogFilter, key_scope: str | None = None
    ) -> list[dict[str, Any]]:
        async with self._pool().acquire() as conn:
            return await self.reader.spend_summary(conn, f, key_scope)

    async def sessions(
        self,
        *,
        limit: int,
        offset: int,
        start: datetime | None,
        end: datetime | None,
        key_scope: str | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        async with self._pool().acquire() as conn:
            if key_scope is not None:
                return await self.reader.key_sessions(
                    conn, key_scope, limit=limit, offset=offset, start=start, end=end
                )
            return await self.reader.sessions(
                conn, limit=limit, offset=offset, start=start, end=end
            )

    async def session_with_requests(
        self, session_id: str, *, limit: int, offset: int, key_scope: str | None = None
    ) -> tuple[dict[str, Any], list[dict[str, Any]], int] | None:
        """A session's totals and its spend-log rows in call order; None when unknown (or,
        with `key_scope`, when that key made none of its calls)."""
        async with self._pool().acquire() as conn:
            if key_scope is None:
                session = await self.reader.session(conn, session_id)
            else:
                found, _ = await self.reader.key_sessions(
                    conn,
                    key_scope,
                    limit=1,
                    offset=0,
                    start=None,
                    end=None,
                    session_id=session_id,
                )
                session = found[0] if found else None
            if session is None:
                return None
            rows, total = await self.reader.spend_logs(
                conn,
                SpendLogFilter(session_id=session_id),
                limit=limit,
                offset=offset,
                ascending=True,
                key_scope=key_scope,
            )
        return session, rows, total

    async def daily(
        self,
        dimension: str,
        *,
        since: date,
        until: date | None,
        key_scope: str | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, str | None]]:
        """Spend per day and id of a dimension, with each id's last alias (keys, teams);
        with `key_scope`, of that key's own calls only."""
        async with self._pool().acquire() as conn:
            if key_scope is None:
                rows = await self.reader.daily(conn, dimension, since=since, until=until)
            else:
                rows = await self.reader.key_daily(
                    conn, key_scope, dimension, since=since, until=until
                )
            aliases: dict[str, str | None] = {}
            if dimension in ("key", "team", "user"):
                aliases = await self.reader.aliases(
                    conn, dimension, sorted({r["dimension_id"] for r in rows})
                )
        return rows, aliases

    async def totals(
        self, entity: str | None, entity_id: str | None, *, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        async with self._pool().acquire() as conn:
            return await self.reader.totals(conn, entity, entity_id, limit=limit, offset=offset)

    async def total_spend(self, since: date) -> Decimal:
        async with self._pool().acquire() as conn:
            return await self.reader.total_spend(conn, since)

    async def top_by_dimension(
        self, dimension: str, *, since: date, until: date | None, limit: int | None
    ) -> list[dict[str, Any]]:
        async with self._pool().acquire() as conn:
            return await self.reader.top_by_dimension(
                conn, dimension, since=since, until=until, limit=limit
            )

    async def top_with_aliases(
        self, dimension: str, *, since: date, limit: int | None
    ) -> tuple[list[dict[str, Any]], dict[str, str | None]]:
        """Top ids of a dimension by spend, with each id's last alias."""
        async with self._pool().acquire() as conn:
            rows = await self.reader.top_by_dimension(
                conn, dimension, since=since, until=None, limit=limit
            )
            aliases = await self.reader.aliases(conn, dimension, [r["dimension_id"] for r in rows])
        return rows, aliases

    async def daily_with_aliases(
        self, dimension: str, *, since: date, until: date | None
    ) -> tuple[list[dict[str, Any]], dict[str, str | None]]:
        """Spend per day and id of a dimension, with each id's last alias."""
        async with self._pool().acquire() as conn:
            rows = await self.reader.daily_by_dimension(conn, dimension, since=since, until=until)
            aliases = await self.reader.aliases(
                conn, dimension, sorted({r["dimension_id"] for r in rows})
            )
        return rows, aliases

    async def audit_logs(
        self, f: AuditFilter, *, limit: int, offset: int, ascending: bool
    ) -> tuple[list[dict[str, Any]], int]:
        async with self._pool().acquire() as conn:
            return await self.reader.audit_logs(
                conn, f, limit=limit, offset=offset, ascending=ascending
            )

    async def audit_log(self, audit_id: str) -> dict[str, Any] | None:
        async with self._pool().acquire() as conn:
            return await self.reader.audit_log(conn, audit_id)
