"""The alerter's consumers: decode each message, evaluate it, and decide ack, nak or term.

Ack policy (all four consumers, `alerter-llm`, `alerter-admin`, `alerter-ledger`, `alerter-ops`):
a message is acked once its state changes are in Redis and any alert it raised
has been claimed and handed to the dispatcher (delivery then runs on its own,
with retries; an alert still waiting in an anti-storm window is sent at
shutdown). A message that `tollgate_shared.events.decode` refuses (unknown
subject or version, bad JSON, wrong schema), or that a rule cannot evaluate, is
terminated at once and counted. A Redis failure naks the message with the
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
from tollgate_alerter.service import Alerter
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
        for msg in msgs:
            await self._one(msg)

    async def _one(self, msg: Msg) -> None:
        name = self.spec.name
        try:
            event: Event = decode(msg.subject, msg.data)
        except EventDecodeError as exc:
            metrics.EVENTS_EVALUATED.labels(name, "term").inc()
            await consuming.terminate(self.spec, msg, str(exc))
            return
        try:
            await self.alerter.handle(event)
        except _STATE_ERRORS as exc:
            metrics.EVENTS_EVALUATED.labels(name, "nak").inc()
            log.warning("state unavailable for %s (%s); redelivering later", msg.subject, exc)
            try:
                await msg.nak(delay=consuming.redelivery_delay(self.spec, msg))
            except Exception as nak_exc:  # the connection may be the problem too
                log.warning("nak failed: %s", nak_exc)
            return
        except Exception as exc:
            metrics.EVENTS_EVALUATED.labels(name, "term").inc()
            log.exception("evaluating %s failed", msg.subject)
            await consuming.terminate(self.spec, msg, f"{type(exc).__name__}: {exc}")
            return
        metrics.EVENTS_EVALUATED.labels(name, "ack").inc()
        try:
            await msg.ack()
        except Exception as exc:
            log.warning("ack failed on %s: %s", msg.subject, exc)
