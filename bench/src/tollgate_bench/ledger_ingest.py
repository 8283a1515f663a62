"""Ledger ingest: synthetic completed events already in the stream, the ledger's rate to persist
them, and an asyncpg COPY of the very same rows into an identical table (the floor)."""

from __future__ import annotations

import asyncio
import importlib.resources
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
from nats.js import JetStreamContext

from tollgate_bench import bodies
from tollgate_shared import names
from tollgate_shared.events import LlmRequestCompleted, new_event_id
from tollgate_shared.migrate import apply_migrations
from tollgate_shared.publishing import publish_event

FLOOR_SCHEMA = "bench_floor"


def ledger_migrations() -> Path:
    return Path(str(importlib.resources.files("tollgate_ledger").joinpath("migrations")))


def synthetic_events(team: str, n: int) -> list[LlmRequestCompleted]:
    """`n` completed calls shaped like ingress's: 50 keys, every 10th in a session, content."""
    now = datetime.now(UTC)
    template = LlmRequestCompleted(
        producer="ingress",
        request_id="template",
        call_type="acompletion",
        api_key_hash="0" * 64,
        key_alias="bench-key",
        team_id=team,
        team_alias="bench team",
        requested_model=bodies.MODEL,
        model_group=bodies.MODEL,
        model_id="bench-1",
        model=bodies.UPSTREAM_MODEL,
        custom_llm_provider="openai",
        api_base="http://127.0.0.1/v1",
        start_time=now,
        end_time=now,
        completion_start_time=now,
        total_latency_ms=3.2,
        upstream_latency_ms=2.4,
        overhead_latency_ms=0.8,
        prompt_tokens=21,
        completion_tokens=14,
        total_tokens=35,
        spend=Decimal("0.000161"),
        tags=["bench"],
        metadata={"tags": ["bench"]},
        requester_ip="127.0.0.1",
        user_agent="tollgate-bench",
        model_parameters={"max_tokens": 32, "temperature": 0},
        messages=[
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "Say hello in one short sentence."},
        ],
        response={
            "id": "chatcmpl-bench0001",
            "object": "chat.completion",
            "model": bodies.UPSTREAM_MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": bodies.REPLY},
                    "finish_reason": "stop",
                }
            ],
            "usage": bodies.USAGE,
        },
        response_id="chatcmpl-bench0001",
        response_model=bodies.UPSTREAM_MODEL,
        finish_reasons=["stop"],
    )
    out = []
    for i in range(n):
        start = now + timedelta(microseconds=i)
        out.append(
            template.model_copy(
                update={
                    "event_id": new_event_id(),
                    "request_id": new_event_id(),
                    "api_key_hash": f"{i % 50:064x}",
                    "session_id": f"bench-session-{i // 10}" if i % 10 == 0 else None,
                    "start_time": start,
                    "completion_start_time": start + timedelta(milliseconds=2),
                    "end_time": start + timedelta(milliseconds=3),
                }
            )
        )
    return out


async def publish_all(js: JetStreamContext, events: list[LlmRequestCompleted]) -> float:
    """Publish with JetStream acks, pipelined in windows; returns seconds taken."""
    t = time.perf_counter()
    window = 1000
    for i in range(0, len(events), window):
        await asyncio.gather(*(publish_event(js, e, 30.0) for e in events[i : i + window]))
    return time.perf_counter() - t


async def unprocessed(js: JetStreamContext) -> int:
    """Messages the ledger's spend consumer has not yet acknowledged (acked = committed)."""
    info = await js.consumer_info(names.LEDGER_SPEND.stream, names.LEDGER_SPEND.name)
    return int(info.num_pending or 0) + int(info.num_ack_pending or 0)


async def wait_drained(js: JetStreamContext, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (left := await unprocessed(js)) > 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"ledger-spend still has {left} unacknowledged messages")
        await asyncio.sleep(0.1)


@dataclass(frozen=True)
class IngestResult:
    events: int
    publish_s: float
    steady_s: float  # from the first committed batch to the last
    steady_events: int  # events committed in that window
    with_start_s: float  # from launching the ledger process to the last commit

    @property
    def rate(self) -> float:
        return self.steady_events / self.steady_s if self.steady_s > 0 else 0.0


async def measure_ingest(
    js: JetStreamContext,
    database_url: str,
    team: str,
    n: int,
    launch: Callable[[], Awaitable[None]],
    publish_s: float,
    timeout: float,
) -> IngestResult:
    """Launch the ledger (already stopped, events already published) and time it to the end."""
    t_launch = time.perf_counter()
    await launch()
    first: tuple[float, int] | None = None
    deadline = time.monotonic() + timeout
    while True:
        left = await unprocessed(js)
        now = time.perf_counter()
        if first is None and left < n:
            first = (now, n - left)
        if left == 0:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"ledger left {left} of {n} events unprocessed after {timeout}s")
        await asyncio.sleep(0.05)
    t_done = time.perf_counter()
    await wait_rows(database_url, team, n, 30.0)
    assert first is not None
    t_first, done_at_first = first
    # The first observed batch is counted as the start: rate over what came after it.
    steady_events = n - done_at_first
    steady_s = t_done - t_first
    if steady_events <= 0 or steady_s <= 0:  # everything landed between two polls
        steady_events, steady_s = n, t_done - t_launch
    return IngestResult(n, publish_s, steady_s, steady_events, t_done - t_launch)


async def count_rows(conn: asyncpg.Connection, team: str) -> int:
    value = await conn.fetchval(
        f'SELECT count(*) FROM "{names.SCHEMA_LEDGER}".spend_logs WHERE team_id = $1', team
    )
    return int(value)


async def wait_rows(database_url: str, team: str, n: int, timeout: float) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + timeout
        while (have := await count_rows(conn, team)) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {have} of {n} spend rows of team {team} are visible")
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


@dataclass(frozen=True)
class FloorResult:
    rows: int
    seconds: list[float]

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)

    @property
    def rate(self) -> float:
        return self.rows / self.median_s if self.median_s > 0 else 0.0


async def copy_floor(
    database_url: str,
    team: str,
    repeats: int,
    around_copy: Callable[[bool], None] | None = None,
) -> FloorResult:
    """COPY the ledger's own rows of `team` into a fresh table with the ledger's schema.

    The scratch schema gets the ledger's migrations (same columns, indexes and
    daily partitioning); each repeat starts from an empty table.
    `around_copy(True/False)` runs just before and after each timed COPY.
    """
    conn = await asyncpg.connect(database_url)
    try:
        src = f'"{names.SCHEMA_LEDGER}".spend_logs'
        records = await conn.fetch(f"SELECT * FROM {src} WHERE team_id = $1", team)
        if not records:
            raise RuntimeError(f"no spend rows of team {team} to copy")
        columns = list(records[0].keys())
        rows = [tuple(r) for r in records]
        del records
        days = await conn.fetch(
            f"""SELECT DISTINCT ("startTime" AT TIME ZONE 'UTC')::date AS day
                FROM {src} WHERE team_id = $1""",
            team,
        )
        await conn.execute(f'DROP SCHEMA IF EXISTS "{FLOOR_SCHEMA}" CASCADE')
        await apply_migrations(conn, FLOOR_SCHEMA, ledger_migrations())
        for rec in days:
            day = rec["day"]
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            await conn.execute(
                f'CREATE TABLE "{FLOOR_SCHEMA}"."spend_logs_p{day:%Y%m%d}" '
                f'PARTITION OF "{FLOOR_SCHEMA}".spend_logs '
                f"FOR VALUES FROM ('{start.isoformat()}') "
                f"TO ('{(start + timedelta(days=1)).isoformat()}')"
            )
        seconds = []
        for _ in range(repeats):
            await conn.execute(f'TRUNCATE "{FLOOR_SCHEMA}".spend_logs')
            if around_copy:
                around_copy(True)
            try:
                t = time.perf_counter()
                await conn.copy_records_to_table(
                    "spend_logs", records=rows, columns=columns, schema_name=FLOOR_SCHEMA
                )
                seconds.append(time.perf_counter() - t)
            finally:
                if around_copy:
                    around_copy(False)
        copied = await conn.fetchval(f'SELECT count(*) FROM "{FLOOR_SCHEMA}".spend_logs')
        if copied != len(rows):
            raise RuntimeError(f"COPY landed {copied} of {len(rows)} rows")
        await conn.execute(f'DROP SCHEMA "{FLOOR_SCHEMA}" CASCADE')
        return FloorResult(len(rows), seconds)
    finally:
        await conn.close()
