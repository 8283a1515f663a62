"""How big each benchmark is: the `full`, `quick` and `smoke` profiles."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Plan:
    name: str
    # Closed-loop gateway runs: seconds per run, runs per (leg, concurrency).
    duration_s: int
    repeats: int
    concurrencies: tuple[int, ...]
    # Open-loop run at a fixed request rate, per leg.
    rate_rps: int
    rate_duration_s: float
    rate_repeats: int
    # After the last request of an open-loop run, how long answers are awaited;
    # what is still outstanding then counts as an error (an overloaded leg).
    drain_s: float
    # Streamed completions timed to the first token, per leg.
    ttft_requests: int
    # Synthetic completed events for the ledger ingest run, and COPY repeats.
    ledger_events: int
    copy_repeats: int
    # End-to-end lag against the whole box: fixed rate, response to visible spend row.
    lag_rps: int
    lag_duration_s: float
    # Whole-box runs: after each, how long the consumers get to finish what it caused
    # before their CPU time is read.
    box_settle_s: float
    # Requests sent to each leg before measuring it.
    warmup_requests: int


FULL = Plan(
    name="full",
    duration_s=10,
    repeats=3,
    concurrencies=(1, 16),
    rate_rps=200,
    rate_duration_s=10.0,
    rate_repeats=3,
    drain_s=10.0,
    ttft_requests=200,
    ledger_events=200_000,
    copy_repeats=3,
    lag_rps=1000,
    lag_duration_s=300.0,
    box_settle_s=3.0,
    warmup_requests=300,
)

QUICK = replace(
    FULL,
    name="quick",
    duration_s=2,
    repeats=2,
    rate_rps=100,
    rate_duration_s=3.0,
    rate_repeats=1,
    drain_s=3.0,
    ttft_requests=30,
    ledger_events=20_000,
    copy_repeats=3,
    lag_rps=100,
    lag_duration_s=5.0,
    box_settle_s=2.0,
    warmup_requests=20,
)

SMOKE = replace(
    FULL,
    name="smoke",
    duration_s=1,
    repeats=1,
    rate_rps=20,
    rate_duration_s=1.0,
    rate_repeats=1,
    drain_s=5.0,
    ttft_requests=3,
    ledger_events=300,
    copy_repeats=1,
    lag_rps=20,
    lag_duration_s=1.0,
    box_settle_s=1.0,
    warmup_requests=5,
)

PROFILES = {p.name: p for p in (FULL, QUICK, SMOKE)}
