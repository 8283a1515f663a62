"""Delivery health of destinations, and LiteLLM's KeyHealthResponse built from it (pure)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tollgate_exporter.destinations import Destination
from tollgate_exporter.routing import RouteSet


@dataclass
class DestinationHealth:
    """Recent delivery outcomes of one destination, for /key/health."""

    sink: str
    label: str
    exported: int = 0
    dead_lettered: int = 0
    consecutive_failures: int = 0
    last_success: float | None = None
    last_failure: float | None = None
    last_dead_letter: float | None = None
    last_error: str | None = None

    def problem(self, now: float, window_s: float) -> str | None:
        """Why this destination is unhealthy now, or None."""
        found: list[str] = []
        if (
            self.consecutive_failures
            and self.last_failure is not None
            and now - self.last_failure < window_s
        ):
            found.append(
                f"{self.consecutive_failures} failed attempt(s) in a row, last "
                f"{now - self.last_failure:.0f}s ago"
            )
        if self.last_dead_letter is not None and now - self.last_dead_letter < window_s:
            found.append(
                f"dead-lettered {self.dead_lettered} event(s), last "
                f"{now - self.last_dead_letter:.0f}s ago"
            )
        if not found:
            return None
        return f"{'; '.join(found)}: {self.last_error}"


def key_health_report(
    routes: RouteSet,
    health: Callable[[Destination], DestinationHealth | None],
    window_s: float,
    now: float | None = None,
) -> dict[str, Any]:
    """LiteLLM's KeyHealthResponse for one key's resolved callbacks."""
    now = time.time() if now is None else now
    callbacks = list(dict.fromkeys([spec.name for spec in routes.resolution.callbacks]))
    if routes.resolution.source == "disabled":
        return {
            "key": "healthy",
            "logging_callbacks": {
                "callbacks": [],
                "status": "healthy",
                "details": "Logging is disabled for this key's team: nothing leaves Tollgate.",
            },
        }
    problems = [f"{p.callback}: {p.reason}" for p in routes.problems]
    delivered: list[str] = []
    for r in routes.routes:
        if r.unusable is not None:
            problems.append(f"{r.callback} ({r.destination.label}): {r.unusable}")
            continue
        h = health(r.destination)
        problem = h.problem(now, window_s) if h else None
        if problem:
            problems.append(f"{r.callback} ({r.destination.label}): {problem}")
        elif h is not None and h.last_success is not None:
            delivered.append(
                f"{r.callback} ({r.destination.label}) last delivered "
                f"{now - h.last_success:.0f}s ago"
            )
    if problems:
        status = "unhealthy"
        details = "Delivery problems: " + "; ".join(problems)
    else:
        status = "healthy"
        details = (
            f"No delivery failures in the last {window_s:.0f}s for {callbacks} "
            f"(settings from {routes.resolution.source})"
        )
        if delivered:
            details += ": " + "; ".join(delivered)
    return {
        "key": "unhealthy" if status == "unhealthy" else "healthy",
        "logging_callbacks": {"callbacks": callbacks, "status": status, "details": details},
    }
