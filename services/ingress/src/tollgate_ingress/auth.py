"""Who is calling: the master key or a virtual key resolved from the watched KV state."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from tollgate_shared.errors import error_json
from tollgate_shared.state import KeyState, SpendState, TeamState, UserState, hash_key, spend_kv_key


class AuthError(Exception):
    """A refused request: HTTP status, a message that says why, and LiteLLM's error code.

    The OpenAI error `type` follows the status (`tollgate_shared.errors`) unless `type_`
    names a more precise one (`budget_exceeded`).
    """

    def __init__(self, status: int, message: str, code: str, type_: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.type_ = type_

    def body(self) -> bytes:
        """The refusal as the client receives it: OpenAI's error document."""
        return error_json(self.message, self.status, type_=self.type_, code=self.code)


@dataclass(frozen=True)
class RateLimit:
    """Requests and tokens per minute allowed to one key, team or user."""

    entity: str
    entity_id: str
    rpm: int | None
    tpm: int | None


@dataclass(frozen=True)
class Identity:
    api_key_hash: str
    is_master: bool = False
    key_alias: str | None = None
    user_id: str | None = None
    user_email: str | None = None
    team_id: str | None = None
    team_alias: str | None = None
    key_models: tuple[str, ...] = ()
    team_models: tuple[str, ...] = ()
    budgets: tuple[tuple[str, str, Decimal], ...] = field(default=())  # (entity, id, max)
    # The key's own limits, then its team's and its user's (LiteLLM enforces all three).
    rate_limits: tuple[RateLimit, ...] = ()
    max_parallel_requests: int | None = None

    @property
    def counts_tokens(self) -> bool:
        return any(limit.tpm is not None for limit in self.rate_limits)


def authenticate(
    token: str | None,
    master_key: str | None,
    keys: Mapping[str, KeyState],
    teams: Mapping[str, TeamState],
    users: Mapping[str, UserState],
    now: datetime,
) -> Identity:
    if not token:
        raise AuthError(401, "No API key: send `Authorization: Bearer sk-...`", "missing_key")
    if master_key and hmac.compare_digest(token.encode(), master_key.encode()):
        return Identity(api_key_hash=hash_key(token), is_master=True)
    digest = hash_key(token)
    key = keys.get(digest)
    if key is None:
        raise AuthError(401, "Invalid API key: this key does not exist", "invalid_key")
    if key.blocked:
        raise AuthError(
            403,
            f"API key {key.key_alias or key.key_name or ''} is blocked".replace("  ", " "),
            "key_blocked",
        )
    if key.expires is not None and key.expires <= now:
        raise AuthError(401, f"API key expired at {key.expires.isoformat()}", "key_expired")
    team = teams.get(key.team_id) if key.team_id else None
    if team is not None and team.blocked:
        raise AuthError(403, f"team {team.team_id} is blocked", "team_blocked")
    user = users.get(key.user_id) if key.user_id else None
    # The key, its team and its user: each may carry a budget and rate limits.
    scopes: list[tuple[str, str, KeyState | TeamState | UserState]] = [("key", digest, key)]
    if team is not None:
        scopes.append(("team", team.team_id, team))
    if user is not None:
        scopes.append(("user", user.user_id, user))
    return Identity(
        api_key_hash=digest,
        key_alias=key.key_alias,
        user_id=key.user_id,
        user_email=user.user_email if user else None,
        team_id=key.team_id,
        team_alias=team.team_alias if team else None,
        key_models=tuple(key.models),
        team_models=tuple(team.models) if team else (),
        budgets=tuple(
            (entity, entity_id, state.max_budget)
            for entity, entity_id, state in scopes
            if state.max_budget is not None
        ),
        rate_limits=tuple(
            RateLimit(entity, entity_id, state.rpm_limit, state.tpm_limit)
            for entity, entity_id, state in scopes
            if state.rpm_limit is not None or state.tpm_limit is not None
        ),
        max_parallel_requests=key.max_parallel_requests,
    )


def _allows(allowed: tuple[str, ...], model: str) -> bool:
    if not allowed or "*" in allowed or "all-proxy-models" in allowed:
        return True
    return model in allowed


def check_model_access(identity: Identity, model: str) -> None:
    if not _allows(identity.key_models, model):
        raise AuthError(
            403,
            f"This key is not allowed to access model {model!r}; allowed: "
            f"{list(identity.key_models)}",
            "model_not_allowed",
        )
    if not _allows(identity.team_models, model):
        raise AuthError(
            403,
            f"Team {identity.team_id} is not allowed to access model {model!r}; allowed: "
            f"{list(identity.team_models)}",
            "model_not_allowed",
        )


def check_budgets(
    identity: Identity, spend: Mapping[str, SpendState], now: datetime | None = None
) -> None:
    """Refuse a caller whose key, team or user has spent its max budget (ledger's totals).

    A total whose budget period is over counts as nothing spent, even before the ledger
    has begun the next period.
    """
    for entity, entity_id, max_budget in identity.budgets:
        total = spend.get(spend_kv_key(entity, entity_id))
        if total is None:
            continue
        current = total.current_spend(now or datetime.now(UTC))
        if current >= max_budget:
            raise AuthError(
                400,
                f"Budget has been exceeded! {entity} {entity_id}: current spend "
                f"{current}, max budget {max_budget}",
                "budget_exceeded",
                type_="budget_exceeded",
            )
