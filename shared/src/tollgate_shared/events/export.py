"""What the exporter could not deliver: one event per (source event, destination) dead-lettered."""

from __future__ import annotations

from typing import ClassVar

from tollgate_shared import names
from tollgate_shared.events.base import Event


class ExportDeadLettered(Event):
    """An LLM event a destination did not accept after the exporter's last attempt.

    `source_*` locate the original event on the LLM stream so an operator can
    replay it; `destination` is a label without secrets (sink, endpoint, public key).
    """

    event_type: ClassVar[str] = names.EXPORT_DEAD_LETTER
    source_event_id: str
    source_subject: str
    source_stream_seq: int | None = None
    request_id: str | None = None
    team_id: str | None = None
    sink: str
    destination: str
    attempts: int
    error: str
    status_code: int | None = None
