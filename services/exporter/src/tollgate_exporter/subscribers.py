"""The `exporter-llm` consumer's edge: decode each message and hand it to the exporter.

Ack policy: a message that is not a readable completed/failed event is
terminated (poison, counted); one whose content cannot be fetched from the
object store is nak'ed with the consumer's backoff; every other message is
acked by the dispatcher once each of its destinations accepted or
dead-lettered it (immediately when it has none). `max_deliver` and backoff are
those of `names.EXPORTER_LLM`.
"""

from __future__ import annotations

import logging

from nats.aio.msg import Msg

from tollgate_exporter.service import EXPORTED_EVENTS, ContentUnavailableError, Exporter
from tollgate_shared import names
from tollgate_shared.consuming import BatchHandler, redelivery_delay, terminate
from tollgate_shared.events import EventDecodeError, decode

log = logging.getLogger(__name__)
SPEC = names.EXPORTER_LLM


def make_handler(exporter: Exporter) -> BatchHandler:
    async def handle(msgs: list[Msg]) -> None:
        for msg in msgs:
            try:
                event = decode(msg.subject, msg.data, EXPORTED_EVENTS)
            except EventDecodeError as exc:
                await terminate(SPEC, msg, f"unreadable event: {exc}"[:300])
                continue
            try:
                await exporter.export(msg, event)
            except ContentUnavailableError as exc:
                log.warning("%s not readable yet; redelivering", exc)
                await msg.nak(delay=redelivery_delay(SPEC, msg))

    return handle
