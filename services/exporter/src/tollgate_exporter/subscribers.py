"""The `exporter-llm` consumer's edge: decode each message, route it, hand it to delivery.

Ack policy: a message that is not a readable completed/failed event is
terminated (poison, counted); one whose content cannot be fetched from the
object store is nak'ed with the consumer's backoff; every other message is
acked by the dispatcher once each of its destinations accepted or
dead-lettered it (immediately when it has none). `max_deliver` and backoff are
those of `names.EXPORTER_LLM`.
"""

from __future__ import annotations

import logging
from typing import Literal

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from pydantic import ValidationError

from tollgate_exporter.delivery import UNROUTABLE, Dispatcher
from tollgate_exporter.routing import Router
from tollgate_shared import names
from tollgate_shared.consuming import BatchHandler, redelivery_delay, terminate
from tollgate_shared.events import LlmRequestFailed, LlmRequestFinished, event_class_for_subject
from tollgate_shared.publishing import hydrate_content

log = logging.getLogger(__name__)
SPEC = names.EXPORTER_LLM


def outcome_of(event: LlmRequestFinished) -> Literal["success", "failure"]:
    return "failure" if isinstance(event, LlmRequestFailed) else "success"


def make_handler(js: JetStreamContext, router: Router, dispatcher: Dispatcher) -> BatchHandler:
    async def handle(msgs: list[Msg]) -> None:
        for msg in msgs:
            try:
                cls = event_class_for_subject(msg.subject)
                event = cls.from_json(msg.data)
            except (LookupError, ValidationError, ValueError) as exc:
                await terminate(SPEC, msg, f"unreadable event: {exc}"[:300])
                continue
            if not isinstance(event, LlmRequestFinished):
                await terminate(SPEC, msg, f"{cls.__name__} is not exported")
                continue
            routes = router.for_call(event.api_key_hash, event.team_id, outcome_of(event))
            for problem in routes.problems:
                UNROUTABLE.labels(problem.callback).inc()
                log.warning(
                    "event %s: %s callback %s not delivered: %s",
                    event.event_id,
                    problem.source,
                    problem.callback,
                    problem.reason,
                )
            if routes.routes and event.content_ref:
                try:
                    event = await hydrate_content(js, event)
                except Exception as exc:
                    log.warning(
                        "content of %s not readable yet (%s); redelivering", event.event_id, exc
                    )
                    await msg.nak(delay=redelivery_delay(SPEC, msg))
                    continue
            await dispatcher.submit(msg, event, routes.routes)

    return handle
