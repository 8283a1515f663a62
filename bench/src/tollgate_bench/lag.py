"""End-to-end lag: from a response reaching the client to its spend row being visible."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass

import asyncpg

from tollgate_bench.load import LoadResult, open_loop, percentile
from tollgate_shared import names

POLL_INTERVAL_S = 0.01


@dataclass(frozen=True)
class LagResult:
    load: LoadResult
    lags_ms: list[float]
    missing: int  # responses whose row never became visible in time
    polls_ms: list[float]  # how long each poll's query took: the poller keeps up when small

    def poll_pct(self, q: float) -> float | None:
        result: float | None = percentile(sorted(self.polls_ms), q)
        return result

    def pct(self, q: float) -> float | None:
        result: float | None = percentile(sorted(self.lags_ms), q)
        return result


async def measure_lag(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    database_url: str,
    rate_rps: float,
    duration_s: float,
    settle_timeout_s: float = 30.0,
) -> LagResult:
    """Fixed-rate load through ingress while a poller watches `ledger.spend_logs`.

    Each 2xx answer's `x-litellm-call-id` and wall-clock receive time are noted;
    every POLL_INTERVAL_S the poller asks, in one query for the whole set, which of
    the outstanding ids have a row, and the lag is the time it first sees one minus
    the receive time (an upper bound, by at most one poll interval plus the query).
    At 1,000 req/s the set holds about rate x lag ids (a few hundred), answered
    through the request_id index; each query's time is kept to show it keeps up.
    """
    received: dict[str, float] = {}
    lags: list[float] = []
    polls: list[float] = []
    done = asyncio.Event()

    def note(headers: Mapping[str, str], at: float) -> None:
        call_id = headers.get(names.HDR_CALL_ID)
        if call_id:
            received[call_id] = at

    conn = await asyncpg.connect(database_url)
    query = (
        f'SELECT request_id FROM "{names.SCHEMA_LEDGER}".spend_logs '
        "WHERE request_id = ANY($1::text[])"
    )

    async def poll() -> None:
        while True:
            pending = list(received)
            if pending:
                asked = time.perf_counter()
                rows = await conn.fetch(query, pending)
                seen = time.time()
                polls.append((time.perf_counter() - asked) * 1000)
                for r in rows:
                    at = received.pop(r["request_id"], None)
                    if at is not None:
                        lags.append((seen - at) * 1000)
            if done.is_set() and not received:
                return
            await asyncio.sleep(POLL_INTERVAL_S)

    poller = asyncio.create_task(poll())
    try:
        load = await open_loop(url, body, headers, rate_rps, duration_s, on_response=note)
        done.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(poller), settle_timeout_s)
    finally:
        poller.cancel()
        await asyncio.gather(poller, return_exceptions=True)
        await conn.close()
    return LagResult(load, lags, len(received), polls)
