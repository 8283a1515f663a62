"""The EXPORT stream's dead letters (adapter): publish one, list them, find a letter's
source event on the LLM stream, delete a letter once it has been replayed."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError

from tollgate_shared import names
from tollgate_shared.events import EventDecodeError, ExportDeadLettered, decode
from tollgate_shared.publishing import publish_event

log = logging.getLogger(__name__)

MSG_ID_HEADER = "Nats-Msg-Id"


@dataclass(frozen=True)
class DeadLetter:
    """One dead-letter record and where it sits in the EXPORT stream."""

    seq: int
    record: ExportDeadLettered


class DeadLetterStream:
    """Dead letters on JetStream: `export.deadletter.v1` in EXPORT, sources in LLM."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js

    async def publish(self, record: ExportDeadLettered) -> None:
        await publish_event(self._js, record)

    async def _next(self, stream: str, subject: str, seq: int) -> RawStreamMsg | None:
        """The first message on `subject` at or after `seq`, or None."""
        try:
            return await self._js.get_msg(stream, seq=seq, subject=subject, next=True)
        except NotFoundError:
            return None

    async def all(self) -> list[DeadLetter]:
        """Every dead letter still in the stream, oldest first."""
        out: list[DeadLetter] = []
        seq = 1
        while raw := await self._next(names.STREAM_EXPORT.name, names.EXPORT_DEAD_LETTER, seq):
            assert raw.seq is not None
            seq = raw.seq + 1
            try:
                record = decode(raw.subject or "", raw.data or b"", ExportDeadLettered)
            except EventDecodeError as exc:
                log.warning("dead letter at %s/%d is unreadable: %s", "EXPORT", raw.seq, exc)
                continue
            out.append(DeadLetter(raw.seq, record))
        return out

    async def source(self, record: ExportDeadLettered) -> tuple[str, bytes] | None:
        """The subject and payload of the event a letter gave up on, or None if it is gone.

        Looked up by its stream sequence; if that message is not it (or is gone, or the
        letter has none), by event id among the messages on its subject.
        """
        stream = names.STREAM_LLM.name
        if record.source_stream_seq:
            try:
                raw = await self._js.get_msg(stream, seq=record.source_stream_seq)
            except NotFoundError:
                raw = None
            if raw is not None and _is_source(raw, record):
                return raw.subject or record.source_subject, raw.data or b""
        seq = 1
        while raw := await self._next(stream, record.source_subject, seq):
            assert raw.seq is not None
            if _is_source(raw, record):
                return raw.subject or record.source_subject, raw.data or b""
            seq = raw.seq + 1
        return None

    async def delete(self, seq: int) -> None:
        """Remove a dead letter from the EXPORT stream (it was delivered)."""
        await self._js.delete_msg(names.STREAM_EXPORT.name, seq)


def _is_source(raw: RawStreamMsg, record: ExportDeadLettered) -> bool:
    if raw.subject != record.source_subject:
        return False
    msg_id = (raw.headers or {}).get(MSG_ID_HEADER)
    if msg_id is not None:
        return bool(msg_id == record.source_event_id)
    try:
        payload = json.loads(raw.data or b"")
    except ValueError:
        return False
    return isinstance(payload, dict) and payload.get("event_id") == record.source_event_id
