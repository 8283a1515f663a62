"""The envelope every event shares: id, time, producer and W3C trace context."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar

import uuid_utils
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

# Money travels as a decimal string and is summed as Decimal, never float.
Money = Annotated[
    Decimal,
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
    Field(json_schema_extra={"format": "decimal"}),
]


def new_event_id() -> str:
    """A time-ordered id (UUIDv7), so ids sort by creation time."""
    return str(uuid_utils.uuid7())


def utcnow() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """Base of every event. Subclasses set `event_type`, which names subject and schema."""

    # Unknown fields are ignored so a consumer keeps reading events that gained
    # an optional field (the same major version).
    model_config = ConfigDict(frozen=True, extra="ignore")

    event_type: ClassVar[str]

    event_id: str = Field(default_factory=new_event_id)
    occurred_at: datetime = Field(default_factory=utcnow)
    producer: str
    traceparent: str | None = None
    tracestate: str | None = None

    def subject(self) -> str:
        """The subject this event is published on."""
        return self.event_type

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Any:
        return cls.model_validate_json(data)
