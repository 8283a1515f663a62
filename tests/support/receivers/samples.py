"""Sample LLM events for exporter tests, shaped as ingress publishes them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from support import builders
from tollgate_shared.events import LlmRequestCompleted, LlmRequestFailed

PROMPT = "Tell me the secret recipe for plum dumplings"
REPLY = "Plums, flour, patience and a pinch of cinnamon"


def completed(
    team_id: str | None = None, key_hash: str | None = None, **over: Any
) -> LlmRequestCompleted:
    start = over.pop("start_time", datetime.now(UTC) - timedelta(seconds=2))
    rid = over.pop("request_id", f"chatcmpl-{uuid.uuid4().hex[:12]}")
    fields: dict[str, Any] = {
        "producer": "ingress",
        "request_id": rid,
        "call_type": "acompletion",
        "api_key_hash": key_hash,
        "key_alias": "alias-1",
        "user_id": "user-1",
        "team_id": team_id,
        "team_alias": f"{team_id}-alias" if team_id else None,
        "requested_model": "gpt-4o",
        "model_group": "gpt-4o",
        "model": "gpt-4o-2024-08-06",
        "custom_llm_provider": "openai",
        "api_base": "https://api.openai.com/v1",
        "start_time": start,
        "end_time": start + timedelta(milliseconds=850),
        "completion_start_time": start + timedelta(milliseconds=300),
        "total_latency_ms": 850.0,
        "prompt_tokens": 9,
        "completion_tokens": 8,
        "total_tokens": 17,
        "spend": Decimal("0.000123"),
        "session_id": "sess-42",
        "metadata": {},
        "tags": [],
        "model_parameters": {"temperature": 0.2, "max_tokens": 64},
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": PROMPT},
        ],
        "response": {
            "id": f"resp-{rid}",
            "object": "chat.completion",
            "model": "gpt-4o-2024-08-06",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": REPLY},
                }
            ],
            "usage": {"prompt_tokens": 9, "completion_tokens": 8, "total_tokens": 17},
        },
        "proxy_server_request": {"body": {"messages": [{"role": "user", "content": PROMPT}]}},
        "response_id": f"resp-{rid}",
        "response_model": "gpt-4o-2024-08-06",
        "finish_reasons": ["stop"],
    }
    fields.update(over)
    return builders.completed(**fields)


def failed(
    team_id: str | None = None, key_hash: str | None = None, **over: Any
) -> LlmRequestFailed:
    ok = completed(team_id, key_hash).model_dump()
    for k in (
        "status",
        "response_id",
        "response_model",
        "finish_reasons",
        "event_id",
        "occurred_at",
    ):
        ok.pop(k, None)
    ok.update(
        response=None,
        completion_tokens=0,
        total_tokens=9,
        spend=Decimal(0),
        error_class="RateLimitError",
        error_message="upstream said 429: slow down",
        status_code=429,
        upstream_status_code=429,
    )
    ok.update(over)
    return builders.failed(**ok)
