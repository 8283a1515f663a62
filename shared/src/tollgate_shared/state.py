"""Shared state kept in JetStream KV buckets: what admin writes and ingress/exporter watch.

admin owns `tollgate-keys` (key: the key's SHA-256 hex), `tollgate-teams`
(key: team id), `tollgate-users` (key: user id) and `tollgate-models` (key:
model id); ledger owns `tollgate-spend` (key: `<entity>.<id>`). Values are the
JSON of the models below. Readers ignore unknown fields, so a writer may add
optional fields without breaking them.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tollgate_shared import names
from tollgate_shared.events.base import Money

CallbackType = Literal["success", "failure", "success_and_failure"]


def hash_key(plaintext: str) -> str:
    """The stored form of a virtual key (LiteLLM's `token`): SHA-256 hex of the plaintext."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


class _State(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


class LoggingCallback(_State):
    """One logging destination: LiteLLM's `{callback_name, callback_type, callback_vars}`."""

    callback_name: str
    callback_type: CallbackType = "success_and_failure"
    callback_vars: dict[str, Any] = Field(default_factory=dict)


class KeyState(_State):
    token: str = Field(description="SHA-256 hex of the key; also the KV key")
    key_name: str | None = Field(None, description="abbreviated plaintext, e.g. sk-...abcd")
    key_alias: str | None = None
    team_id: str | None = None
    user_id: str | None = None
    models: list[str] = Field(default_factory=list)
    max_budget: Money | None = None
    budget_duration: str | None = None
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_parallel_requests: int | None = None
    expires: datetime | None = None
    blocked: bool = False
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def logging(self) -> list[LoggingCallback] | None:
        """`metadata.logging` when the key overrides its team's logging, else None."""
        raw = self.metadata.get("logging")
        if raw is None:
            return None
        return [LoggingCallback.model_validate(x) for x in raw]


class TeamState(_State):
    team_id: str
    team_alias: str | None = None
    models: list[str] = Field(default_factory=list)
    max_budget: Money | None = None
    budget_duration: str | None = None
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    blocked: bool = False
    metadata: dict[str, Any] = Field(default_factory=dict)
    members_with_roles: list[dict[str, Any]] = Field(default_factory=list)
    # Set through POST /team/{id}/callback; None means "not configured here".
    logging: list[LoggingCallback] | None = None
    # POST /team/{id}/disable_logging: nothing leaves Tollgate for this team.
    logging_disabled: bool = False


class UserState(_State):
    user_id: str
    user_email: str | None = None
    user_role: str | None = None
    models: list[str] = Field(default_factory=list)
    max_budget: Money | None = None
    budget_duration: str | None = None
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    teams: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)


class ModelState(_State):
    """A model added through the admin API: the same shape as a `model_list` entry."""

    model_id: str
    model_name: str
    litellm_params: dict[str, Any]
    model_info: dict[str, Any] = Field(default_factory=dict)


class SpendState(_State):
    """Spend total of one key/team/user, kept by the ledger for budget enforcement."""

    entity: Literal["key", "team", "user", "end_user"]
    entity_id: str
    spend: Money = Decimal(0)
    max_budget: Money | None = None
    # Set for an entity with a `budget_duration`: spend counts from period_start, and a
    # total whose budget_reset_at has passed belongs to a period that is over.
    period_start: datetime | None = None
    budget_reset_at: datetime | None = None

    def current_spend(self, now: datetime) -> Decimal:
        """Spend that counts against the budget at `now`: 0 once the period is over."""
        if self.budget_reset_at is not None and self.budget_reset_at <= now:
            return Decimal(0)
        return self.spend

    def supersedes(self, other: SpendState) -> bool:
        """Whether this total is newer than `other`: a later period, or more spend in it."""
        mine = self.period_start or datetime.min.replace(tzinfo=UTC)
        theirs = other.period_start or datetime.min.replace(tzinfo=UTC)
        return mine > theirs or (mine == theirs and self.spend > other.spend)


def spend_kv_key(entity: str, entity_id: str) -> str:
    return f"{entity}.{entity_id}"


# The model stored in each KV bucket (snapshotted and contract-tested like the events).
STATE_TYPES: dict[str, type[_State]] = {
    names.KV_KEYS: KeyState,
    names.KV_TEAMS: TeamState,
    names.KV_USERS: UserState,
    names.KV_MODELS: ModelState,
    names.KV_SPEND: SpendState,
}
