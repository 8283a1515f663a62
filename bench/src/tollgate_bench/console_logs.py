"""The console's Logs page at N spend rows: seed a scratch database, start ledger and ingress,
time GET /ui/logs (the whole page: ingress -> ledger -> PostgreSQL -> HTML) per filter.

`python -m tollgate_bench.console_logs [--rows 1000000] [--repeat 20]`; `just console-bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import yaml

from tollgate_bench.processes import start_process, stop_process, wait_http
from tollgate_devstack.embedded import EmbeddedStack, free_port
from tollgate_ledger.app import migrate
from tollgate_ledger.partitions import partition_bounds, partition_name
from tollgate_shared.provision import provision_url

MASTER = "sk-console-bench-master"
DAYS = 30


async def seed(database_url: str, rows: int) -> float:
    """`rows` calls over the last 30 days: 200 keys in 20 teams, 6 models (one a group whose
    deployment model is named otherwise, as `openai/...` under its group), 2% failures, a
    session for every 4 calls, two tags each, stored prompt and answer. Returns seconds."""
    t0 = time.perf_counter()
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SET search_path TO ledger")
        today = datetime.now(UTC).date()
        for i in range(DAYS + 1):
            day = today - timedelta(days=DAYS - i)
            lo, hi = partition_bounds(day)
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {partition_name('spend_logs', day)} "
                f"PARTITION OF spend_logs "
                f"FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')"
            )
        start = datetime.combine(today - timedelta(days=DAYS - 1), datetime.min.time(), UTC)
        span_s = int((datetime.now(UTC) - start).total_seconds())
        chunk = 100_000
        for lo_n in range(0, rows, chunk):
            await conn.execute(
                """
                INSERT INTO spend_logs (request_id, call_type, api_key, spend, total_tokens,
                    prompt_tokens, completion_tokens, "startTime", "endTime",
                    "completionStartTime", request_duration_ms, model, model_group,
                    custom_llm_provider, "user", metadata, request_tags, team_id, end_user,
                    messages, response, session_id, status, event_id, key_alias, team_alias,
                    error_class, error_message, status_code)
                SELECT 'req-' || n, 'acompletion',
                    encode(sha256(('key' || (n % 200))::bytea), 'hex'),
                    (n % 97) * 0.00001, 150 + n % 50, 100 + n % 30, 50 + n % 20,
                    t, t + interval '800 ms', t + interval '120 ms', 800,
                    CASE WHEN n % 6 = 5 THEN 'openai/model-5' ELSE 'model-' || (n % 6) END,
                    'model-' || (n % 6), 'openai', 'user-' || (n % 500),
                    '{"env": "bench"}'::jsonb,
                    jsonb_build_array('tag-' || (n % 10), 'app-' || (n % 3)),
                    'team-' || (n % 200 / 10), 'end-user-' || (n % 1000),
                    jsonb_build_array(jsonb_build_object('role', 'user', 'content', 'hello ' || n)),
                    jsonb_build_object('choices', jsonb_build_array(jsonb_build_object(
                        'message', jsonb_build_object('role', 'assistant', 'content', 'hi')))),
                    'sess-' || (n / 4), CASE WHEN n % 50 = 0 THEN 'failure' ELSE 'success' END,
                    'ev-' || n, 'alias-' || (n % 200), 'Team ' || (n % 200 / 10),
                    CASE WHEN n % 50 = 0 THEN 'RateLimitError' END,
                    CASE WHEN n % 50 = 0 THEN 'upstream 429' END,
                    CASE WHEN n % 50 = 0 THEN 429 END
                FROM (SELECT n, $3::timestamptz + (n::float8 / $2 * $4) * interval '1 second' AS t
                      FROM generate_series($1::bigint, $1::bigint + $5 - 1) AS n) s
                """,
                lo_n,
                rows,
                start,
                span_s,
                min(chunk, rows - lo_n),
            )
        await conn.execute("ANALYZE spend_logs")
    finally:
        await conn.close()
    return time.perf_counter() - t0


def scenarios(today: date) -> dict[str, dict[str, str]]:
    """The Logs page as operators open it: no filter, later pages, and each filter."""
    week = (today - timedelta(days=7)).isoformat()
    return {
        "newest": {},
        "page 5": {"page": "5"},
        "key hash": {},  # set in measure()
        "key alias": {"key": "alias-17"},
        "team": {"team_id": "team-3"},
        "user": {"user_id": "user-42"},
        "end user": {"end_user": "end-user-7"},
        "model": {"model": "model-2"},
        "model group": {"model": "model-5"},
        "failures": {"status": "failure"},
        "session": {"session_id": "sess-1234"},
        "tag": {"tag": "tag-4"},
        "request id": {"request_id": "req-4242"},
        "last 7 days": {"start_date": f"{week}T00:00:00"},
        "team + failures + 7 days": {
            "team_id": "team-5",
            "status": "failure",
            "start_date": f"{week}T00:00:00",
        },
    }


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def measure(ingress: str, repeat: int) -> dict[str, list[float]]:
    cases = scenarios(datetime.now(UTC).date())
    cases["key hash"] = {"key": hashlib.sha256(b"key17").hexdigest()}
    out: dict[str, list[float]] = {}
    with httpx.Client(base_url=ingress, timeout=30) as client:
        r = client.post("/ui/login", data={"key": MASTER}, follow_redirects=False)
        if r.status_code not in (302, 303):
            raise RuntimeError(f"sign-in failed: {r.status_code} {r.text[:300]}")
        client.cookies = r.cookies
        for name, params in cases.items():
            client.get("/ui/logs", params=params)  # warm: plans and pages cached as in use
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                resp = client.get("/ui/logs", params=params)
                times.append((time.perf_counter() - t0) * 1000)
                if resp.status_code != 200:
                    raise RuntimeError(f"{name}: {resp.status_code} {resp.text[:300]}")
            out[name] = times
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="console-bench-"))
    stack = EmbeddedStack(work / "stack")
    urls = stack.start()
    procs = []
    try:
        asyncio.run(provision_url(urls.nats_url))
        asyncio.run(migrate(urls.database_url))
        print(f"seeding {args.rows:,} spend rows ...", file=sys.stderr, flush=True)
        seeded = asyncio.run(seed(urls.database_url, args.rows))
        print(f"seeded in {seeded:.0f} s", file=sys.stderr, flush=True)
        cfg = work / "config.yaml"
        cfg.write_text(
            yaml.safe_dump(
                {
                    "model_list": [],
                    "general_settings": {"master_key": MASTER, "store_prompts_in_spend_logs": True},
                }
            )
        )
        env = {**urls.env(), "TOLLGATE_CONFIG": str(cfg), "TOLLGATE_MIGRATE_ON_START": "false"}
        ledger_port, ingress_port = free_port(), free_port()
        ledger = start_process(
            "ledger",
            [sys.executable, "-m", "tollgate_ledger"],
            work,
            {**env, "TOLLGATE_PORT": str(ledger_port), "TOLLGATE_CONSUMERS_ENABLED": "false"},
            None,
        )
        procs.append(ledger)
        wait_http(ledger, f"http://127.0.0.1:{ledger_port}/health", 60)
        ingress = start_process(
            "ingress",
            [sys.executable, "-m", "tollgate_ingress"],
            work,
            {
                **env,
                "TOLLGATE_PORT": str(ingress_port),
                "TOLLGATE_LEDGER_URL": f"http://127.0.0.1:{ledger_port}",
                "TOLLGATE_SPOOL_PATH": str(work / "spool.sqlite3"),
            },
            None,
        )
        procs.append(ingress)
        wait_http(ingress, f"http://127.0.0.1:{ingress_port}/health", 60)
        results = measure(f"http://127.0.0.1:{ingress_port}", args.repeat)
    finally:
        for proc in reversed(procs):
            stop_process(proc)
        stack.stop()
    every = [t for ts in results.values() for t in ts]
    print(f"\nLogs page (GET /ui/logs, 50 rows + total) at {args.rows:,} spend rows, ms:")
    print(f"{'view':<28}{'p50':>8}{'p95':>8}{'max':>8}")
    for name, ts in results.items():
        print(f"{name:<28}{statistics.median(ts):>8.1f}{pct(ts, 0.95):>8.1f}{max(ts):>8.1f}")
    p50, p95 = statistics.median(every), pct(every, 0.95)
    print(f"{'all views':<28}{p50:>8.1f}{p95:>8.1f}{max(every):>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
