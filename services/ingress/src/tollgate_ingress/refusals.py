"""Refusals as failed calls: their exception class, and how a flood of identical ones is
sampled so that a client retrying a dead key in a loop costs no more than the refusal."""

from __future__ import annotations

from dataclasses import dataclass, field

# LiteLLM's exception classes by status (a budget refusal is a 400 of its own class).
_CLASSES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    413: "RequestTooLargeError",
    429: "RateLimitError",
    503: "ServiceUnavailableError",
}


def exception_class(status: int, code: str | None) -> str:
    if code == "budget_exceeded":
        return "BudgetExceededError"
    return _CLASSES.get(status, "ProxyException")


RefusalKey = tuple[str | None, str | None, int, str | None, str]


@dataclass
class RefusalSampler:
    """At most one event per `window_s` for each identical refusal (same client address,
    key, status, code and model); the ones in between are counted, and the next event
    says how many it stands for. Metrics count every refusal regardless."""

    window_s: float = 1.0
    max_keys: int = 10_000
    _seen: dict[RefusalKey, tuple[float, int]] = field(default_factory=dict)

    def admit(self, key: RefusalKey, now: float) -> int | None:
        """None to suppress this refusal's event; else how many were suppressed before it."""
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.window_s:
            self._seen[key] = (last[0], last[1] + 1)
            return None
        if last is None and len(self._seen) >= self.max_keys:
            self._seen.clear()  # a flood of distinct refusals: forget, never grow unbounded
        self._seen[key] = (now, 0)
        return last[1] if last is not None else 0
