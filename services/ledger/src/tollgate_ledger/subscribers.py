"""The ledger's consumers: decode each message, write the batch, and decide ack, nak or term.

Ack policy (both consumers): a message is acked only after the transaction that
records it has committed. A message that can never be recorded (bad JSON, wrong
schema) is terminated at once, counted, and reported as `ledger.tracking.failed.v1`.
A database failure naks the whole batch with the consumer's backoff
(`names.LEDGER_SPEND`: max_deliver 8, backoff 1-30 s) and reports
`ledger.db.error.v1`. A batch the database rejects for its data is retried one
message at a time, so a single bad row is terminated and the rest still land.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
from asyncpg.exceptions._base import DataError as ClientDataError
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from tollgate_ledger import metrics
from tollgate_ledger.budgets import BudgetBook, SpendMirror, spend_totals
from tollgate_ledger.handlers import (
    PRODUCER,
    AuditRow,
    DecodeError,
    LedgerPolicy,
    SpendRow,
    audit_row,
    decode_admin,
    decode_finished,
    request_id_hint,
    spend_row,
)
from tollgate_ledger.projections.audit import AuditProjection
from tollgate_ledger.projections.spend import BatchResult, SpendProjection, TotalAfter
from tollgate_shared import consuming
from tollgate_shared.events import (
    Event,
    LedgerDbError,
    LedgerSpendUpdated,
    LedgerTrackingFailed,
    LlmRequestFinished,
)
from tollgate_shared.names import ConsumerSpec
from tollgate_shared.publishing import hydrate_content, publish_event

log = logging.getLogger(__name__)

# Errors that say "this data can never be written" rather than "the database is unwell".
_DATA_ERRORS: tuple[type[BaseException], ...] = (
    ClientDataError,  # a value asyncpg cannot encode for its column
    OverflowError,  # ... or one too large for it
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.UntranslatableCharacterError,
)
_DB_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)

Publish = Callable[[Event], Awaitable[None]]


def js_publisher(js: JetStreamContext) -> Publish:
    async def publish(event: Event) -> None:
        try:
            await publish_event(js, event)
        except Exception as exc:
            log.warning("could not publish %s: %s", event.event_type, exc)

    return publish


async def _nak_all(spec: ConsumerSpec, msgs: list[Msg]) -> None:
    for msg in msgs:
        try:
            await msg.nak(delay=consuming.redelivery_delay(spec, msg))
        except Exception as exc:  # the connection may be the problem
            log.warning("nak failed: %s", exc)


@dataclass(frozen=True)
class SpendBatch:
    """A decoded batch waiting for its transaction: each live message with its row."""

    ready: list[tuple[Msg, SpendRow]]
    prepare_s: float


@dataclass
class SpendConsumer:
    """`ledger-spend`: completed/failed LLM events into spend logs, sessions and totals."""

    spec: ConsumerSpec
    js: JetStreamContext
    pool: asyncpg.Pool
    projection: SpendProjection
    policy: LedgerPolicy
    budgets: BudgetBook | None = None
    mirror: SpendMirror | None = None
    publish: Publish | None = None

    def __post_init__(self) -> None:
        # Totals committed but not yet announced, newest per entity (totals are absolute,
        # so a newer one supersedes an older one and the backlog stays bounded).
        self._pending: dict[tuple[str, str], Any] = {}
        self._wake = asyncio.Event()
        self._announcer: asyncio.Task[None] | None = None

    async def handle(self, msgs: list[Msg]) -> None:
        """Decode, write and acknowledge one batch."""
        await self.commit(await self.prepare(msgs))

    async def prepare(self, msgs: list[Msg]) -> SpendBatch:
        """Decode a batch into rows; poison is terminated here, nothing is acked yet."""
        t0 = time.perf_counter()
        metrics.BATCH_SIZE.labels(self.spec.name).observe(len(msgs))
        decoded: list[tuple[Msg, LlmRequestFinished]] = []
        for msg in msgs:
            try:
                event = decode_finished(msg.subject, msg.data, content=self.policy.store_prompts)
                decoded.append((msg, event))
            except DecodeError as exc:
                await self._poison(msg, str(exc), request_id_hint(msg.data))
        ready: list[tuple[Msg, SpendRow]] = []
        for msg, event in decoded:
            hydrated = await self._hydrate(msg, event)
            if hydrated is not None:
                ready.append((msg, spend_row(hydrated, self.policy)))
        return SpendBatch(ready, time.perf_counter() - t0)

    async def commit(self, batch: SpendBatch) -> None:
        """Write a prepared batch in one transaction, then ack what it recorded."""
        t0 = time.perf_counter()
        name = self.spec.name
        ready = batch.ready
        if not ready:
            metrics.BATCHES.labels(name, "empty").inc()
            return
        try:
            result = await self._write([row for _, row in ready])
        except _DATA_ERRORS as exc:
            log.warning(
                "batch of %d rejected for its data (%s); writing one by one", len(ready), exc
            )
            result = await self._write_one_by_one(ready)
        except _DB_ERRORS as exc:
            await self._db_error(exc, [m for m, _ in ready])
            return
        else:
            for msg, _ in ready:
                await msg.ack()
        metrics.BATCHES.labels(name, "committed").inc()
        metrics.BATCH_SECONDS.labels(name).observe(batch.prepare_s + time.perf_counter() - t0)
        self._count(result, len(ready))
        await self._after_commit(result)

    async def _write(self, rows: list[SpendRow]) -> BatchResult:
        async with self.pool.acquire() as conn, conn.transaction():
            try:
                return await self.projection.write(conn, rows)
            except BaseException:
                self.projection.forget_partitions()
                raise

    async def _write_one_by_one(self, ready: list[tuple[Msg, SpendRow]]) -> BatchResult:
        """Isolate the rows the database refuses; everything else still lands."""
        inserted = logs = sessions = daily = 0
        totals = {}
        for msg, row in ready:
            try:
                res = await self._write([row])
            except _DATA_ERRORS as exc:
                await self._poison(msg, f"database rejected the row: {exc}", row.request_id)
                continue
            except _DB_ERRORS as exc:
                await self._db_error(exc, [msg])
                continue
            await msg.ack()
            inserted += res.inserted
            logs += res.logs
            sessions += res.sessions
            daily += res.daily
            for t in res.totals:
                totals[(t.entity, t.entity_id)] = t
        return BatchResult(inserted, logs, sessions, daily, list(totals.values()))

    async def _hydrate(self, msg: Msg, event: LlmRequestFinished) -> LlmRequestFinished | None:
        if not self.policy.needs_content(event):
            return event
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
            await msg.nak(delay=consuming.redelivery_delay(self.spec, msg))
            return None

    def _count(self, result: BatchResult, received: int) -> None:
        metrics.ROWS_WRITTEN.labels("processed_requests").inc(result.inserted)
        metrics.ROWS_WRITTEN.labels("spend_logs").inc(result.logs)
        metrics.ROWS_WRITTEN.labels("sessions").inc(result.sessions)
        metrics.ROWS_WRITTEN.labels("daily_spend").inc(result.daily)
        metrics.ROWS_WRITTEN.labels("spend_totals").inc(len(result.totals))
        metrics.DUPLICATES.labels(self.spec.name).inc(max(0, received - result.inserted))

    async def _after_commit(self, result: BatchResult) -> None:
        """Hand the batch's totals to the announcer; the next fetch does not wait for it."""
        if not result.totals:
            return
        for t in result.totals:
            self._pending[(t.entity, t.entity_id)] = t
        if self._announcer is None or self._announcer.done():
            self._announcer = asyncio.create_task(self._announce_forever())
        self._wake.set()

    async def announce_totals(self, totals: list[TotalAfter]) -> None:
        """Announce totals changed outside a batch (a budget period that began)."""
        await self._after_commit(BatchResult(totals=totals))

    async def _announce_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.announce()

    async def announce(self) -> None:
        """Publish `ledger.spend.updated.v1` and mirror the totals to KV for ingress."""
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        totals = spend_totals(list(pending.values()), self.budgets)
        try:
            if self.publish is not None:
                await self.publish(LedgerSpendUpdated(producer=PRODUCER, totals=totals))
            if self.mirror is not None:
                await self.mirror.write(totals)
        except Exception:
            log.exception("announcing %d spend totals failed", len(totals))

    async def stop(self) -> None:
        """Announce what is pending, then stop the announcer."""
        if self._announcer is not None:
            self._announcer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._announcer
        await self.announce()

    async def _poison(self, msg: Msg, reason: str, request_id: str | None) -> None:
        metrics.TRACKING_FAILED.labels(self.spec.name).inc()
        await consuming.terminate(self.spec, msg, reason)
        if self.publish is not None:
            await self.publish(
                LedgerTrackingFailed(
                    producer=PRODUCER,
                    request_id=request_id,
                    subject_name=msg.subject,
                    error=reason[:2000],
                )
            )

    async def _db_error(self, exc: BaseException, msgs: list[Msg]) -> None:
        metrics.DB_ERRORS.labels(self.spec.name).inc()
        metrics.BATCHES.labels(self.spec.name, "db_error").inc()
        log.error("writing %d spend events failed: %s", len(msgs), exc)
        if self.publish is not None:
            await self.publish(
                LedgerDbError(
                    producer=PRODUCER,
                    error=f"{type(exc).__name__}: {exc}"[:2000],
                    batch_size=len(msgs),
                )
            )
        await _nak_all(self.spec, msgs)


@dataclass
class AuditConsumer:
    """`ledger-audit`: admin changes into the audit log (when `store_audit_logs`)."""

    spec: ConsumerSpec
    pool: asyncpg.Pool
    projection: AuditProjection
    policy: LedgerPolicy
    publish: Publish | None = None

    def __post_init__(self) -> None:
        # Totals committed but not yet announced, newest per entity (totals are absolute,
        # so a newer one supersedes an older one and the backlog stays bounded).
        self._pending: dict[tuple[str, str], Any] = {}
        self._wake = asyncio.Event()
        self._announcer: asyncio.Task[None] | None = None

    async def handle(self, msgs: list[Msg]) -> None:
        t0 = time.perf_counter()
        name = self.spec.name
        metrics.BATCH_SIZE.labels(name).observe(len(msgs))
        ready: list[tuple[Msg, AuditRow]] = []
        for msg in msgs:
            try:
                ready.append((msg, audit_row(decode_admin(msg.subject, msg.data))))
            except DecodeError as exc:
                metrics.TRACKING_FAILED.labels(name).inc()
                await consuming.terminate(self.spec, msg, str(exc))
        if not ready:
            metrics.BATCHES.labels(name, "empty").inc()
            return
        if not self.policy.store_audit_logs:
            # Audit logging is off: the change is not recorded, by configuration.
            for msg, _ in ready:
                await msg.ack()
            metrics.BATCHES.labels(name, "skipped").inc()
            return
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                inserted = await self.projection.write(conn, [r for _, r in ready])
        except _DB_ERRORS as exc:
            metrics.DB_ERRORS.labels(name).inc()
            metrics.BATCHES.labels(name, "db_error").inc()
            log.error("writing %d audit rows failed: %s", len(ready), exc)
            if self.publish is not None:
                await self.publish(
                    LedgerDbError(
                        producer=PRODUCER,
                        error=f"{type(exc).__name__}: {exc}"[:2000],
                        batch_size=len(ready),
                    )
                )
            await _nak_all(self.spec, [m for m, _ in ready])
            return
        for msg, _ in ready:
            await msg.ack()
        metrics.ROWS_WRITTEN.labels("audit_log").inc(inserted)
        metrics.DUPLICATES.labels(name).inc(len(ready) - inserted)
        metrics.BATCHES.labels(name, "committed").inc()
        metrics.BATCH_SECONDS.labels(name).observe(time.perf_counter() - t0)


@contextlib.contextmanager
def _survives(spec: ConsumerSpec, what: str) -> Iterator[None]:
    """A crash in one batch is logged, never fatal: its unacked messages come back after
    ack_wait and the loop keeps going (cancellation still passes through)."""
    try:
        yield
    except Exception:
        log.exception("%s on %s failed unexpectedly", what, spec.name)


async def run(
    js: JetStreamContext,
    spec: ConsumerSpec,
    handle: Callable[[list[Msg]], Awaitable[None]],
    batch_size: int,
) -> None:
    """Run one consumer until cancelled; a crash in a batch is logged, never fatal."""

    async def guarded(msgs: list[Msg]) -> None:
        with _survives(spec, "batch"):
            await handle(msgs)

    await consuming.run_consumer(js, spec, guarded, batch_size=batch_size)


async def run_spend(
    js: JetStreamContext, spec: ConsumerSpec, consumer: SpendConsumer, batch_size: int
) -> None:
    """Run the spend consumer pipelined: a batch decodes while the one before it commits."""

    async def prepare(msgs: list[Msg]) -> SpendBatch | None:
        with _survives(spec, "decoding a batch"):
            return await consumer.prepare(msgs)
        return None

    async def commit(batch: SpendBatch | None) -> None:
        if batch is not None:
            with _survives(spec, "batch"):
                await consumer.commit(batch)

    await consuming.run_pipelined_consumer(js, spec, prepare, commit, batch_size=batch_size)
