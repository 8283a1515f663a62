"""The ledger's consumers: bind the durables, decode each message, call the service, and
ack, nak or terminate what it says.

Ack policy (both consumers): a message is acked only after the transaction that
records it has committed. A message that can never be recorded (bad JSON, wrong
schema, unknown version, or a row the database refuses) is terminated at once,
counted, and reported as `ledger.tracking.failed.v1` (spend). A database failure is
reported as `ledger.db.error.v1`; then, if the database is down (the breaker's probe
fails), the consumers pause: the batch is held, unacked and not nak'ed, and written
again once the database answers, so an outage of any length spends no delivery. A
failure while the database answers naks the batch with the consumer's backoff
(`names.LEDGER_SPEND`: max_deliver 8, backoff 1-30 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from tollgate_ledger.decoding import (
    ADMIN_CHANGE,
    FINISHED,
    MaxDeliveries,
    request_id_hint,
)
from tollgate_ledger.service import (
    DB_ERRORS,
    AuditService,
    DeadLetters,
    Fate,
    SpendBatch,
    SpendService,
    Verdict,
)
from tollgate_shared import consuming
from tollgate_shared.events import AdminChanged, EventDecodeError, LlmRequestFinished, decode
from tollgate_shared.names import ConsumerSpec

log = logging.getLogger(__name__)

# Decoding is CPU work on the loop that also runs the previous batch's transaction: hand
# the loop back every so many messages, so that transaction's round trips are not held up
# behind a whole batch (the two stages overlap only if neither starves the other).
YIELD_EVERY = 20


async def _nak(spec: ConsumerSpec, msgs: list[Msg]) -> None:
    for msg in msgs:
        try:
            await msg.nak(delay=consuming.redelivery_delay(spec, msg))
        except Exception as exc:  # the connection may be the problem
            log.warning("nak failed: %s", exc)


@dataclass
class SpendSubscriber:
    """`ledger-spend`: completed/failed LLM events, in batches, to `SpendService`."""

    spec: ConsumerSpec
    service: SpendService
    breaker: consuming.CircuitBreaker | None = None

    async def handle(self, msgs: list[Msg]) -> None:
        """Decode, record and acknowledge one batch."""
        await self.commit(await self.prepare(msgs))

    async def prepare(self, msgs: list[Msg]) -> SpendBatch[Msg]:
        """Decode a batch into rows; poison is terminated here, nothing is acked yet."""
        started = time.perf_counter()
        content = self.service.reads_content
        decoded: list[tuple[Msg, LlmRequestFinished]] = []
        for i, msg in enumerate(msgs, 1):
            if i % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            try:
                decoded.append((msg, decode(msg.subject, msg.data, FINISHED, content=content)))
            except EventDecodeError as exc:
                await self._refuse(msg, Verdict(Fate.REFUSED, str(exc), request_id_hint(msg.data)))
        batch = await self.service.prepare(decoded, received=len(msgs), started=started)
        await _nak(self.spec, batch.later)
        return batch

    async def commit(self, batch: SpendBatch[Msg]) -> None:
        """Have the service write a prepared batch, then ack, nak or term each message;
        while the database is down, hold what is left and write it when it is back."""
        while True:
            retry: list[Msg] = []
            for msg, verdict in await self.service.commit(batch):
                if verdict.fate is Fate.RECORDED:
                    await msg.ack()
                elif verdict.fate is Fate.RETRY:
                    retry.append(msg)
                else:
                    await self._refuse(msg, verdict)
            if not retry:
                return
            if not await _database_down(self.breaker):
                await _nak(self.spec, retry)
                return
            held = {id(m) for m in retry}
            batch = SpendBatch([(m, row) for m, row in batch.ready if id(m) in held], [], 0.0)

    async def _refuse(self, msg: Msg, verdict: Verdict) -> None:
        await consuming.terminate(self.spec, msg, verdict.reason)
        await self.service.untracked(msg.subject, verdict.reason, verdict.request_id)


@dataclass
class AuditSubscriber:
    """`ledger-audit`: admin changes, in batches, to `AuditService`."""

    spec: ConsumerSpec
    service: AuditService
    breaker: consuming.CircuitBreaker | None = None

    async def handle(self, msgs: list[Msg]) -> None:
        started = time.perf_counter()
        ready: list[tuple[Msg, AdminChanged]] = []
        for msg in msgs:
            try:
                ready.append((msg, decode(msg.subject, msg.data, ADMIN_CHANGE)))
            except EventDecodeError as exc:
                self.service.untracked()
                await consuming.terminate(self.spec, msg, str(exc))
        while True:
            verdict = await self.service.record(
                [e for _, e in ready], received=len(msgs), started=started
            )
            if verdict.fate is not Fate.RETRY:
                break
            if not await _database_down(self.breaker):
                await _nak(self.spec, [m for m, _ in ready])
                return
        for msg, _ in ready:
            await msg.ack()


async def _database_down(breaker: consuming.CircuitBreaker | None) -> bool:
    """After a failed write: True once the database, found down, is back (write again);
    False when it answers (the failure is the batch's own: nak with backoff)."""
    if breaker is None or not await breaker.check("a ledger write failed"):
        return False
    await breaker.closed()
    return True


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
    breaker: consuming.CircuitBreaker | None = None,
    linger_s: float = 0.0,
) -> None:
    """Run one consumer until cancelled; a crash in a batch is logged, never fatal."""

    async def guarded(msgs: list[Msg]) -> None:
        with _survives(spec, "batch"):
            await handle(msgs)

    await consuming.run_consumer(
        js, spec, guarded, batch_size=batch_size, breaker=breaker, linger_s=linger_s
    )


async def run_spend(
    js: JetStreamContext,
    spec: ConsumerSpec,
    subscriber: SpendSubscriber,
    batch_size: int,
    commits: int = 1,
    linger_s: float = 0.0,
) -> None:
    """Run the spend consumer pipelined: a batch decodes while the one (or `commits`)
    before it commit; after a short fetch it lingers `linger_s`, so a moderate stream
    commits one transaction per batch instead of one per event or two."""

    async def prepare(msgs: list[Msg]) -> SpendBatch[Msg] | None:
        with _survives(spec, "decoding a batch"):
            return await subscriber.prepare(msgs)
        return None

    async def commit(batch: SpendBatch[Msg] | None) -> None:
        if batch is not None:
            with _survives(spec, "batch"):
                await subscriber.commit(batch)

    await consuming.run_pipelined_consumer(
        js,
        spec,
        prepare,
        commit,
        batch_size=batch_size,
        breaker=subscriber.breaker,
        commits=commits,
        linger_s=linger_s,
    )


@dataclass
class DeadLetterSubscriber:
    """JetStream's max-delivery advisories of the ledger's consumers, read from the stream
    that keeps them (`names.STREAM_ADVISORIES`): each is recorded by `DeadLetters` and acked
    once recorded; while the database cannot record it, it is nak'ed and comes back."""

    spec: ConsumerSpec
    dead: DeadLetters

    async def handle(self, msgs: list[Msg]) -> None:
        for msg in msgs:
            try:
                advisory = MaxDeliveries.model_validate_json(msg.data)
            except ValueError as exc:
                await consuming.terminate(self.spec, msg, f"unreadable advisory: {exc}")
                continue
            try:
                await self.dead.captured(advisory, attempts=3)
            except DB_ERRORS as exc:
                log.warning("dead letter not recorded yet (%s); kept for later", exc)
                await msg.nak(delay=consuming.redelivery_delay(self.spec, msg))
                continue
            await msg.ack()
