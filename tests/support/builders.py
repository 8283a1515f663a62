"""Builders for events and KV states in tests: one place, valid by default, any field overridable.

completed(team_id="team-a", spend=Decimal("0.5"))
failed(status_code=429)
admin_change(AdminSubject.KEY_CREATED, object_id=token)
key_state(token=hash_key("sk-1"), max_budget=Decimal(1))
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count
from typing import Any

from tollgate_shared.events import (
    AdminChanged,
    DeploymentStateChanged,
    LedgerDbError,
    LedgerSpendUpdated,
    LedgerTrackingFailed,
    LlmRequestCompleted,
    LlmRequestFailed,
    LlmRequestStarted,
    SpendTotal,
)
from tollgate_shared.names import AdminSubject
from tollgate_shared.state import KeyState, ModelState, SpendState, TeamState, UserState

_SEQ = count(1)


def _started_fields(n: int, start: datetime) -> dict[str, Any]:
    return {
        "producer": "ingress",
        "request_id": f"req-{n}",
        "call_type": "acompletion",
        "requested_model": "gpt-4o",
        "model_group": "gpt-4o",
        "model": "gpt-4o",
        "custom_llm_provider": "openai",
        "start_time": start,
    }


def _finished_fields(n: int, start: datetime) -> dict[str, Any]:
    return {
        **_started_fields(n, start),
        "end_time": start + timedelta(milliseconds=500),
        "total_latency_ms": 500.0,
        "upstream_latency_ms": 490.0,
        "overhead_latency_ms": 10.0,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "spend": Decimal("0.001"),
        "messages": [{"role": "user", "content": f"hello {n}"}],
        "response": {"choices": [{"message": {"role": "assistant", "content": "hi"}}]},
    }


def _start(start_time: datetime | None) -> datetime:
    return start_time or datetime.now(UTC) - timedelta(seconds=1)


def started(*, start_time: datetime | None = None, **kw: Any) -> LlmRequestStarted:
    return LlmRequestStarted.model_validate(
        {**_started_fields(next(_SEQ), _start(start_time)), **kw}
    )


def completed(*, start_time: datetime | None = None, **kw: Any) -> LlmRequestCompleted:
    return LlmRequestCompleted.model_validate(
        {**_finished_fields(next(_SEQ), _start(start_time)), **kw}
    )


def failed(*, start_time: datetime | None = None, **kw: Any) -> LlmRequestFailed:
    fields = {
        **_finished_fields(next(_SEQ), _start(start_time)),
        "spend": Decimal(0),
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
        "response": None,
        "error_class": "APIError",
        "error_message": "upstream 500",
        "status_code": 500,
        "upstream_status_code": 500,
    }
    return LlmRequestFailed.model_validate({**fields, **kw})


def admin_change(subject: AdminSubject = AdminSubject.KEY_CREATED, **kw: Any) -> AdminChanged:
    fields: dict[str, Any] = {
        "producer": "admin",
        "entity": subject.entity,
        "action": subject.action,
        "object_id": f"obj-{next(_SEQ)}",
        "changed_by": "admin",
        "updated_values": {"max_budget": "10"},
    }
    return AdminChanged.model_validate({**fields, **kw})


def spend_updated(*totals: SpendTotal, **kw: Any) -> LedgerSpendUpdated:
    if not totals:
        totals = (spend_total(),)
    return LedgerSpendUpdated.model_validate({"producer": "ledger", "totals": totals, **kw})


def spend_total(**kw: Any) -> SpendTotal:
    fields: dict[str, Any] = {"entity": "team", "entity_id": "team-a", "spend": Decimal("1")}
    return SpendTotal.model_validate({**fields, **kw})


def key_state(**kw: Any) -> KeyState:
    return KeyState.model_validate({"token": f"{next(_SEQ):064x}", **kw})


def team_state(**kw: Any) -> TeamState:
    return TeamState.model_validate({"team_id": f"team-{next(_SEQ)}", **kw})


def user_state(**kw: Any) -> UserState:
    return UserState.model_validate({"user_id": f"user-{next(_SEQ)}", **kw})


def model_state(**kw: Any) -> ModelState:
    fields: dict[str, Any] = {
        "model_id": f"model-{next(_SEQ)}",
        "model_name": "gpt-4o",
        "litellm_params": {"model": "openai/gpt-4o", "api_base": "http://127.0.0.1:1/v1"},
    }
    return ModelState.model_validate({**fields, **kw})


def spend_state(**kw: Any) -> SpendState:
    fields: dict[str, Any] = {"entity": "key", "entity_id": f"{next(_SEQ):064x}"}
    return SpendState.model_validate({**fields, **kw})


def deployment_changed(**kw: Any) -> DeploymentStateChanged:
    fields: dict[str, Any] = {
        "producer": "ingress",
        "state": "cooled_down",
        "model_group": "gpt-4o",
        "model_id": f"dep-{next(_SEQ)}",
    }
    return DeploymentStateChanged.model_validate({**fields, **kw})


def db_error(**kw: Any) -> LedgerDbError:
    fields: dict[str, Any] = {"producer": "ledger", "error": "connection refused", "batch_size": 1}
    return LedgerDbError.model_validate({**fields, **kw})


def tracking_failed(**kw: Any) -> LedgerTrackingFailed:
    fields: dict[str, Any] = {
        "producer": "ledger",
        "request_id": f"req-{next(_SEQ)}",
        "subject_name": "llm.request.completed.v1._",
        "error": "invalid spend",
    }
    return LedgerTrackingFailed.model_validate({**fields, **kw})
