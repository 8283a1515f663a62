"""When to restart a supervised process, and when its restarts count as a crash loop (pure)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

FIRST_DELAY_S = 1.0
MAX_DELAY_S = 30.0
# A process that stayed up this long is healthy again: its next failure waits 1 s.
STABLE_AFTER_S = 30.0
# This many exits within the window is a crash loop, reported loudly.
CRASH_LOOP_EXITS = 5
CRASH_LOOP_WINDOW_S = 120.0


def backoff_delay(failures: int, first_s: float = FIRST_DELAY_S) -> float:
    """Seconds before restart number `failures` (1-based): 1, 2, 4, 8, 16, 30, 30, ...
    (from `first_s`, doubling, at most 30 s)."""
    if failures <= 0:
        return 0.0
    return min(first_s * float(2 ** min(failures - 1, 16)), MAX_DELAY_S)


@dataclass
class RestartPolicy:
    """One process's restart book: consecutive failures, recent exits, crash-loop state."""

    failures: int = 0
    restarts: int = 0
    first_delay_s: float = FIRST_DELAY_S
    crash_loop: bool = False
    exits: deque[float] = field(default_factory=deque)

    def on_exit(self, now: float, ran_for: float) -> float:
        """Record an exit at `now` after running `ran_for` seconds; returns the restart delay."""
        if ran_for >= STABLE_AFTER_S:
            self.failures = 0
        self.failures += 1
        self.exits.append(now)
        while self.exits and now - self.exits[0] > CRASH_LOOP_WINDOW_S:
            self.exits.popleft()
        # Latched until the process runs stable: at the 30 s backoff fewer than five exits
        # fit in the window, yet the process is still crash-looping.
        self.crash_loop = self.crash_loop or len(self.exits) >= CRASH_LOOP_EXITS
        return backoff_delay(self.failures, self.first_delay_s)

    def on_restart(self) -> None:
        self.restarts += 1

    def on_stable(self) -> bool:
        """The process has run STABLE_AFTER_S: forget its failures. True if a loop just ended."""
        ended = self.crash_loop
        self.failures = 0
        self.crash_loop = False
        self.exits.clear()
        return ended
