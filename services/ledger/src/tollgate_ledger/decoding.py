"""What the ledger reads from a message besides the event: the classes it expects and
the request id of one it cannot decode (`tollgate_shared.events.decode` does the rest)."""

from __future__ import annotations

import orjson

from tollgate_shared.events import AdminChanged, LlmRequestCompleted, LlmRequestFailed

# What `ledger-spend` and `ledger-audit` accept from `decode`; anything else is poison.
FINISHED = (LlmRequestCompleted, LlmRequestFailed)
ADMIN_CHANGE = AdminChanged


def request_id_hint(data: bytes) -> str | None:
    """The request id of an undecodable message, when its JSON still names one."""
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    rid = raw.get("request_id") if isinstance(raw, dict) else None
    return rid if isinstance(rid, str) else None
