"""Pure conversions of stored rows: into the KV state models ingress watches, and into the
public (masked) shapes the API returns and the audit events carry."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from tollgate_admin.masking import mask_callback_vars, mask_metadata
from tollgate_shared import durations
from tollgate_shared.config import ModelEntry
from tollgate_shared.redaction import mask_secrets
from tollgate_shared.state import KeyState, LoggingCallback, ModelState, TeamState, UserState

Row = Mapping[str, Any]

# Fields that change on every write and would only add noise to `updated_values`.
_VOLATILE = ("updated_at", "updated_by")


def _money(value: Decimal | None) -> float | None:
    return float(value) if value is not None else None


# --- KV state -----------------------------------------------------------------------------
def key_state(row: Row) -> KeyState:
    return KeyState(
        token=row["token"],
        key_name=row["key_name"],
        key_alias=row["key_alias"],
        team_id=row["team_id"],
        user_id=row["user_id"],
        models=list(row["models"] or []),
        max_budget=row["max_budget"],
        budget_duration=row["budget_duration"],
        rpm_limit=row["rpm_limit"],
        tpm_limit=row["tpm_limit"],
        max_parallel_requests=row["max_parallel_requests"],
        expires=row["expires"],
        blocked=row["blocked"],
        metadata=dict(row["metadata"] or {}),
    )


def logging_callbacks(callbacks: Sequence[Row]) -> list[LoggingCallback]:
    return [
        LoggingCallback(
            callback_name=c["callback_name"],
            callback_type=c["callback_type"],
            callback_vars=dict(c["callback_vars"] or {}),
        )
        for c in callbacks
    ]


def team_state(row: Row, members: Sequence[Row], callbacks: Sequence[Row]) -> TeamState:
    if row["logging_disabled"]:
        logging: list[LoggingCallback] | None = []
    elif callbacks:
        logging = logging_callbacks(callbacks)
    else:
        logging = None
    return TeamState(
        team_id=row["team_id"],
        team_alias=row["team_alias"],
        models=list(row["models"] or []),
        max_budget=row["max_budget"],
        budget_duration=row["budget_duration"],
        rpm_limit=row["rpm_limit"],
        tpm_limit=row["tpm_limit"],
        blocked=row["blocked"],
        metadata=dict(row["metadata"] or {}),
        members_with_roles=[member_public(m) for m in members],
        logging=logging,
        logging_disabled=row["logging_disabled"],
    )


def user_state(row: Row, teams: Sequence[str]) -> UserState:
    return UserState(
        user_id=row["user_id"],
        user_email=row["user_email"],
        user_role=row["user_role"],
        models=list(row["models"] or []),
        max_budget=row["max_budget"],
        budget_duration=row["budget_duration"],
        rpm_limit=row["rpm_limit"],
        tpm_limit=row["tpm_limit"],
        teams=list(teams),
        metadata=dict(row["metadata"] or {}),
    )


def model_state(row: Row) -> ModelState:
    return ModelState(
        model_id=row["model_id"],
        model_name=row["model_name"],
        litellm_params=dict(row["litellm_params"]),
        model_info={**dict(row["model_info"] or {}), "id": row["model_id"]},
    )


# --- public shapes ------------------------------------------------------------------------
def with_reset_at(public: dict[str, Any], zone: ZoneInfo, now: datetime) -> dict[str, Any]:
    """Add LiteLLM's `budget_reset_at`: when the current `budget_duration` period ends."""
    period = durations.current_period(public.get("budget_duration"), now, zone)
    public["budget_reset_at"] = period[1] if period else None
    return public


def key_public(row: Row, spend: float = 0.0) -> dict[str, Any]:
    return {
        "token": row["token"],
        "key_name": row["key_name"],
        "key_alias": row["key_alias"],
        "spend": spend,
        "max_budget": _money(row["max_budget"]),
        "expires": row["expires"],
        "models": list(row["models"] or []),
        "user_id": row["user_id"],
        "team_id": row["team_id"],
        "max_parallel_requests": row["max_parallel_requests"],
        "metadata": mask_metadata(row["metadata"] or {}),
        "tpm_limit": row["tpm_limit"],
        "rpm_limit": row["rpm_limit"],
        "budget_duration": row["budget_duration"],
        "blocked": row["blocked"],
        "created_by": row["created_by"],
        "updated_by": row["updated_by"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def member_public(member: Row) -> dict[str, Any]:
    return {
        "role": member["role"],
        "user_id": member["user_id"],
        "user_email": member["user_email"],
    }


def callback_public(callback: Row) -> dict[str, Any]:
    return {
        "callback_name": callback["callback_name"],
        "callback_type": callback["callback_type"],
        "callback_vars": mask_callback_vars(callback["callback_vars"] or {}),
    }


def team_public(
    row: Row, members: Sequence[Row], callbacks: Sequence[Row], spend: float = 0.0
) -> dict[str, Any]:
    metadata = mask_metadata(row["metadata"] or {})
    # LiteLLM keeps team callbacks in metadata.logging; show them there (masked) too.
    if callbacks or row["logging_disabled"]:
        metadata["logging"] = [callback_public(c) for c in callbacks]
    return {
        "team_id": row["team_id"],
        "team_alias": row["team_alias"],
        "members_with_roles": [member_public(m) for m in members],
        "metadata": metadata,
        "tpm_limit": row["tpm_limit"],
        "rpm_limit": row["rpm_limit"],
        "max_budget": _money(row["max_budget"]),
        "budget_duration": row["budget_duration"],
        "models": list(row["models"] or []),
        "blocked": row["blocked"],
        "spend": spend,
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def user_public(row: Row, teams: Sequence[str], spend: float = 0.0) -> dict[str, Any]:
    return {
        "user_id": row["user_id"],
        "user_email": row["user_email"],
        "user_alias": row["user_alias"],
        "user_role": row["user_role"],
        "models": list(row["models"] or []),
        "max_budget": _money(row["max_budget"]),
        "budget_duration": row["budget_duration"],
        "tpm_limit": row["tpm_limit"],
        "rpm_limit": row["rpm_limit"],
        "metadata": mask_metadata(row["metadata"] or {}),
        "teams": list(teams),
        "spend": spend,
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


# The fields LiteLLM's /model/info gives every deployment (None when not known).
_MODEL_INFO_FIELDS = (
    "max_tokens",
    "max_input_tokens",
    "max_output_tokens",
    "input_cost_per_token",
    "output_cost_per_token",
    "cache_read_input_token_cost",
    "input_cost_per_second",
    "output_cost_per_second",
    "supports_function_calling",
    "supports_parallel_function_calling",
    "supports_tool_choice",
    "supports_vision",
    "supports_response_schema",
    "supports_system_messages",
    "supports_prompt_caching",
    "supports_reasoning",
    "tpm",
    "rpm",
)


def litellm_model_info(params: Mapping[str, Any], info: Mapping[str, Any]) -> dict[str, Any]:
    """A deployment's model_info with LiteLLM's fields: provider, mode, the model key sent
    upstream, limits and prices (from litellm_params where set there), unknowns as None."""
    model = str(params.get("model") or "")
    provider, _, key = model.partition("/") if "/" in model else ("openai", "", model)
    out: dict[str, Any] = dict.fromkeys(_MODEL_INFO_FIELDS)
    out.update(
        {
            "key": key,
            "litellm_provider": provider,
            "mode": "chat",
            "supported_openai_params": None,
        }
    )
    out.update({f: params[f] for f in _MODEL_INFO_FIELDS if params.get(f) is not None})
    out.update(info)
    return out


def model_public(row: Row) -> dict[str, Any]:
    params = mask_secrets(row["litellm_params"])
    info = {**dict(row["model_info"] or {}), "id": row["model_id"], "db_model": True}
    return {
        "model_name": row["model_name"],
        "litellm_params": params,
        "model_info": litellm_model_info(params, info),
    }


def config_model_public(entry: ModelEntry, index: int) -> dict[str, Any]:
    """A `model_list` entry of config.yaml, shown beside the API-added ones (read-only)."""
    params = entry.litellm_params.model_dump(exclude_none=True, mode="json")
    info = entry.model_info.model_dump(exclude_none=True, mode="json")
    info.setdefault("id", f"config-{index}")
    info["db_model"] = False
    return {
        "model_name": entry.model_name,
        "litellm_params": mask_secrets(params),
        "model_info": litellm_model_info(params, info),
    }


# --- audit values ---------------------------------------------------------------------------
def audit_value(public: Mapping[str, Any]) -> dict[str, Any]:
    """A public shape as an audit `before_value`/`updated_values` (JSON-safe, masked already)."""
    out: dict[str, Any] = {}
    for k, v in public.items():
        out[k] = v.isoformat() if hasattr(v, "isoformat") else v
    return out


def changed_fields(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `after` that differ from `before` (LiteLLM's `updated_values`)."""
    return {k: v for k, v in after.items() if before.get(k) != v}


def audit_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    changed = changed_fields(audit_value(before), audit_value(after))
    for k in _VOLATILE:
        changed.pop(k, None)
    return changed
