"""What the ledger reads from a message besides the event: the classes it expects and
the request id of one it cannot decode (`tollgate_shared.events.decode` does the rest)."""

from __future__ import annotations

import orjson
from pydantic import BaseModel, ConfigDict

from tollgate_shared.events import AdminChanged, LlmRequestCompleted, LlmRequestFailed

# What `ledger-spend` and `ledger-audit` accept from `decode`; anything else is poison.
FINISHED = (LlmRequestCompleted, LlmRequestFailed)
ADMIN_CHANGE = AdminChanged


class MaxDeliveries(BaseModel):
    """`io.nats.jetstream.advisory.v1.max_deliver`: which message JetStream gave up on (on
    `names.max_deliveries_advisory(spec)`, JetStream's own subject, not a Tollgate event)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    stream: str
    consumer: str
    stream_seq: int
    deliveries: int = 0


def request_id_hint(data: bytes) -> str | None:
    """The request id of an undecodable message, when its JSON still names one."""
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    rid = raw.get("request_id") if isinstance(raw, dict) else None
    return rid if isinstance(rid, str) else None
