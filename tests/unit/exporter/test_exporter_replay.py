"""DeadLetterDesk: which destination a replay goes to, and what stays when it cannot."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from support.builders import completed
from tollgate_exporter import routing
from tollgate_exporter.dead_letters import DeadLetter
from tollgate_exporter.destinations import Destination
from tollgate_exporter.service import DeadLetterDesk
from tollgate_exporter.sinks import registry
from tollgate_exporter.sinks.base import BatchResult, ExportItem, PermanentError, stable_id
from tollgate_shared.config import parse_config
from tollgate_shared.events import ExportDeadLettered, LlmRequestFinished

ENV = {"WEBHOOK_URL": "http://hooks.example/in"}


@dataclass
class FakeLetters:
    letters: list[DeadLetter]
    sources: dict[str, tuple[str, bytes]]
    deleted: list[int] = field(default_factory=list)

    async def all(self) -> list[DeadLetter]:
        return [x for x in self.letters if x.seq not in self.deleted]

    async def source(self, record: ExportDeadLettered) -> tuple[str, bytes] | None:
        return self.sources.get(record.source_event_id)

    async def delete(self, seq: int) -> None:
        self.deleted.append(seq)


@dataclass
class FakeWebhook:
    kind: str = "webhook"
    refuse: bool = False
    sent: list[tuple[str, ExportItem]] = field(default_factory=list)

    async def send(self, destination: Destination, items: Sequence[ExportItem]) -> BatchResult:
        if self.refuse:
            raise PermanentError("webhook answered 401", 401)
        self.sent.extend((destination.label, i) for i in items)
        return BatchResult()


def desk(letters: FakeLetters, sink: FakeWebhook, **litellm: Any) -> DeadLetterDesk:
    settings = parse_config(
        {"litellm_settings": {"callbacks": ["webhook"], **litellm}}
    ).litellm_settings
    router = routing.Router(settings, ENV, {}.get, {}.get, registry())

    async def hydrate(event: LlmRequestFinished) -> LlmRequestFinished:
        return event

    return DeadLetterDesk(letters, router, {"webhook": sink}, hydrate)


def letter(seq: int, event: LlmRequestFinished, dest_key: str, label: str) -> DeadLetter:
    record = ExportDeadLettered(
        event_id=stable_id(event.event_id, dest_key, "dead-letter"),
        producer="exporter",
        source_event_id=event.event_id,
        source_subject=event.subject(),
        source_stream_seq=seq * 10,
        request_id=event.request_id,
        sink="webhook",
        destination=label,
        attempts=3,
        error="503",
    )
    return DeadLetter(seq, record)


def current_webhook() -> Destination:
    settings = parse_config({"litellm_settings": {"callbacks": ["webhook"]}}).litellm_settings
    router = routing.Router(settings, ENV, {}.get, {}.get, registry())
    (r,) = router.for_call(None, None, "success").routes
    return r.destination


async def test_replay_delivers_redacted_as_routed_and_deletes() -> None:
    dest = current_webhook()
    ev = completed()
    letters = FakeLetters(
        [letter(1, ev, dest.key, dest.label)], {ev.event_id: (ev.subject(), ev.to_json())}
    )
    sink = FakeWebhook()
    (outcome,) = await desk(letters, sink, turn_off_message_logging=True).replay()
    assert outcome.status == "delivered"
    assert letters.deleted == [1]
    ((label, item),) = sink.sent
    assert label == dest.label
    assert item.redacted
    assert item.event.messages is None


async def test_a_changed_destination_key_falls_back_to_the_label() -> None:
    dest = current_webhook()
    ev = completed()
    old = letter(1, ev, "webhook:credentials-since-changed", dest.label)
    letters = FakeLetters([old], {ev.event_id: (ev.subject(), ev.to_json())})
    sink = FakeWebhook()
    (outcome,) = await desk(letters, sink).replay()
    assert outcome.status == "delivered"


async def test_what_cannot_be_replayed_stays_and_says_why() -> None:
    dest = current_webhook()
    gone, unrouted, refused = completed(), completed(), completed()
    letters = FakeLetters(
        [
            letter(1, gone, dest.key, dest.label),
            letter(2, unrouted, "webhook:old", "webhook webhook http://elsewhere/"),
            letter(3, refused, dest.key, dest.label),
        ],
        {e.event_id: (e.subject(), e.to_json()) for e in (unrouted, refused)},
    )
    outcomes = await desk(letters, FakeWebhook(refuse=True)).replay()
    assert [o.status for o in outcomes] == ["failed"] * 3
    assert "no longer in the LLM stream" in outcomes[0].detail
    assert "no longer routed" in outcomes[1].detail
    assert "401" in outcomes[2].detail
    assert letters.deleted == []


async def test_filters_by_sink_and_request() -> None:
    dest = current_webhook()
    a, b = completed(), completed()
    letters = FakeLetters(
        [letter(1, a, dest.key, dest.label), letter(2, b, dest.key, dest.label)], {}
    )
    d = desk(letters, FakeWebhook())
    assert [x.seq for x in await d.letters(request_id=b.request_id)] == [2]
    assert await d.letters(sink="langfuse") == []
    assert len(await d.letters()) == 2
