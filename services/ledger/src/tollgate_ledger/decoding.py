"""What the ledger reads from a message besides the event: the classes it expects and
the request id of one it cannot decode (`tollgate_shared.events.decode` does the rest)."""

from __future__ import annotations

import orjson
from pydantic import BaseModel, ConfigDict

from tollgate_shared.events import AdminChanged, LlmRequestCompleted, LlmRequestFailed

# What `ledger-spend` and `ledger-audit` accept from `decode`; anything else is poison.
FINISHED = (LlmRequestCompleted, LlmRequestFailed)
ADMIN_CHANGE = AdminChanged

# JetStream's own advisory subject (not a Tollgate subject): published by the server when
# a message reached its consumer's max_deliver, `<prefix>.<stream>.<consumer>`.
MAX_DELIVERIES_ADVISORY = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"


def max_deliveries_subject(stream: str, consumer: str) -> str:
    return f"{MAX_DELIVERIES_ADVISORY}.{stream}.{consumer}"


class MaxDeliveries(BaseModel):
    """`io.nats.jetstream.advisory.v1.max_deliver`: which message JetStream gave up on."""

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
