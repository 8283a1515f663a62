"""The alerter's consumers: decode each message, evaluate it, and decide ack, nak or term.

Ack policy (all four consumers, `alerter-llm`, `alerter-admin`, `alerter-ledger`, `alerter-ops`):
each fetched batch is evaluated in order, its hanging-request bookkeeping and report
aggregates summed and written to Redis in one round trip, and then acked; a message is
acked once its state changes are in Redis and any alert it raised
has been claimed and handed to the dispatcher (delivery then runs on its own,
with retries; an alert still waiting in an anti-storm window is sent at
shutdown). A message that `tollgate_shared.events.decode` refuses (unknown
subject or version, bad JSON, wrong schema), or that a rule cannot evaluate, is
terminated at once and counted. A Redis failure naks the messages not yet committed with the
consumer's backoff (`max_deliver` 8, backoff 1-30 s, from `tollgate_shared.names`);
redelivery is safe because every effect is idempotent (claims, per-event window
members, hanging-request ids).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from nats.aio.msg import Msg
from redis.exceptions import RedisError

from tollgate_alerter import metrics
from tollgate_alerter.service import Alerter, Effects
from tollgate_shared import consuming
from tollgate_shared.events import Event, EventDecodeError, decode
from tollgate_shared.names import ConsumerSpec

log = logging.getLogger(__name__)

_STATE_ERRORS: tuple[type[BaseException], ...] = (
    RedisError,
    ConnectionError,
    TimeoutError,
    OSError,
)


@dataclass
class EventConsumer:
    spec: ConsumerSpec
    alerter: Alerter

    async def handle(self, msgs: list[Msg]) -> None:
        """Evaluate the batch in order, write its state changes at once, then ack it."""
        name = self.spec.name
        effects = Effects()
        evaluated: list[Msg] = []
        for pos, msg in enumerate(msgs):
            try:
                event: Event = decode(msg.subject, msg.data, content=False)
            except EventDecodeError as exc:
                metrics.EVENTS_EVALUATED.labels(name, "term").inc()
                await consuming.terminate(self.spec, msg, str(exc))
                continue
            # A rule that fails leaves `effects` as it was: the event adds its changes last.
            try:
                await self.alerter.evaluate(event, effects)
            except _STATE_ERRORS as exc:
                log.warning("state unavailable for %s (%s); redelivering later", msg.subject, exc)
                await self._nak([*evaluated, *msgs[pos:]])
                return
            except Exception as exc:
                metrics.EVENTS_EVALUATED.labels(name, "term").inc()
                log.exception("evaluating %s failed", msg.subject)
                await consuming.terminate(self.spec, msg, f"{type(exc).__name__}: {exc}")
                continue
            evaluated.append(msg)
        try:
            await self.alerter.commit(effects)
        except _STATE_ERRORS as exc:
            log.warning("state unavailable (%s); redelivering %d events later", exc, len(evaluated))
            await self._nak(evaluated)
            return
        if evaluated:
            metrics.EVENTS_EVALUATED.labels(name, "ack").inc(len(evaluated))
        for msg in evaluated:
            try:
                await msg.ack()
            except Exception as exc:
                log.warning("ack failed on %s: %s", msg.subject, exc)

    async def _nak(self, msgs: list[Msg]) -> None:
        if msgs:
            metrics.EVENTS_EVALUATED.labels(self.spec.name, "nak").inc(len(msgs))
        for msg in msgs:
            try:
                await msg.nak(delay=consuming.redelivery_delay(self.spec, msg))
            except Exception as exc:  # the connection may be the problem too
                log.warning("nak failed: %s", exc)
