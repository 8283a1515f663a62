"""Which deployment answers a model group: config and admin-added models, cooldowns, fallbacks."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tollgate_shared.config import LitellmParams, ModelEntry, RouterSettings
from tollgate_shared.state import ModelState
from tollgate_shared.vocabulary import DeploymentState

if TYPE_CHECKING:
    from tollgate_ingress.upstream import Adapter

# Failures that say the deployment, not the request, is unwell (529: Anthropic overloaded).
COOLDOWN_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 529})


@dataclass(frozen=True)
class Deployment:
    model_name: str
    model_id: str
    params: LitellmParams
    model_info: dict[str, Any] = field(default_factory=dict)
    # The provider's adapter, chosen once when the deployment is built (None: OpenAI's).
    adapter: Adapter | None = field(default=None, compare=False, repr=False)

    @property
    def region(self) -> str | None:
        return self.params.region_name


def deployments_from(
    config_models: Iterable[ModelEntry],
    admin_models: Iterable[ModelState],
    adapter_for: Callable[[str], Adapter] | None = None,
) -> dict[str, list[Deployment]]:
    """Group every deployment by its public model name (config first, then admin-added),
    each with its provider's adapter from `adapter_for` (the upstream registry)."""
    groups: dict[str, list[Deployment]] = {}

    def adapter(params: LitellmParams) -> Adapter | None:
        return adapter_for(params.provider) if adapter_for is not None else None

    for i, m in enumerate(config_models):
        mid = m.model_info.id or f"{m.model_name}-{i}"
        info = m.model_info.model_dump(exclude_none=True)
        groups.setdefault(m.model_name, []).append(
            Deployment(m.model_name, mid, m.litellm_params, info, adapter(m.litellm_params))
        )
    for s in admin_models:
        try:
            params = LitellmParams.model_validate(s.litellm_params)
        except ValueError:
            continue  # admin validates; a bad value must not break routing
        groups.setdefault(s.model_name, []).append(
            Deployment(s.model_name, s.model_id, params, dict(s.model_info), adapter(params))
        )
    return groups


@dataclass
class _Health:
    failures: deque[float] = field(default_factory=deque)
    cooldown_until: float = 0.0
    cooled: bool = False


@dataclass(frozen=True)
class StateChange:
    state: DeploymentState  # "cooled_down" or "recovered" (ingress announces fallbacks itself)
    deployment: Deployment
    reason: str | None = None
    cooldown_s: float | None = None


class Router:
    """simple-shuffle among deployments that are not cooling down (LiteLLM's default)."""

    def __init__(self, settings: RouterSettings, rng: random.Random | None = None) -> None:
        self.settings = settings
        self._groups: dict[str, list[Deployment]] = {}
        self._health: dict[str, _Health] = {}
        self._rng = rng or random.Random()

    def set_deployments(self, groups: dict[str, list[Deployment]]) -> None:
        self._groups = groups

    def model_names(self) -> list[str]:
        return list(self._groups)

    def group(self, model_name: str) -> list[Deployment]:
        return self._groups.get(model_name, [])

    def pick(
        self, model_name: str, now: float, exclude: frozenset[str] = frozenset()
    ) -> Deployment | None:
        candidates = [d for d in self._groups.get(model_name, []) if d.model_id not in exclude]
        if not candidates:
            return None
        healthy = [d for d in candidates if self._health_of(d).cooldown_until <= now]
        pool = healthy or candidates  # all cooling: try anyway rather than refuse
        if len(pool) == 1:
            return pool[0]
        weights = [float(d.params.rpm or 1) for d in pool]
        return self._rng.choices(pool, weights)[0]

    def fallbacks_for(self, model_name: str) -> list[str]:
        for entry in self.settings.fallbacks:
            if model_name in entry:
                return list(entry[model_name])
        return []

    def _health_of(self, d: Deployment) -> _Health:
        return self._health.setdefault(d.model_id, _Health())

    def record_failure(self, d: Deployment, status: int, now: float) -> StateChange | None:
        """Count a failure; past `allowed_fails` within a minute the deployment cools down."""
        if status not in COOLDOWN_STATUSES:
            return None
        h = self._health_of(d)
        h.failures.append(now)
        while h.failures and h.failures[0] < now - 60:
            h.failures.popleft()
        if len(h.failures) > self.settings.allowed_fails and h.cooldown_until <= now:
            h.cooldown_until = now + self.settings.cooldown_time
            h.failures.clear()
            h.cooled = True
            return StateChange("cooled_down", d, f"{status} responses", self.settings.cooldown_time)
        return None

    def record_success(self, d: Deployment, now: float) -> StateChange | None:
        h = self._health_of(d)
        if h.cooled and h.cooldown_until <= now:
            h.cooled = False
            h.failures.clear()
            return StateChange("recovered", d)
        return None
