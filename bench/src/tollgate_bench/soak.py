"""RSS soak: N calls through the whole box while every service's resident memory is sampled.

`python -m tollgate_bench.soak --calls 1000000` (`./just soak`) starts the whole box
(`wholebox.Box`: every service, NATS, PostgreSQL and Redis, nothing pinned), drives
ingress with a closed loop (wrk, c=16 by default) in chunks of a few seconds until N
calls are answered, and after each chunk reads every service's RSS from /proc. Ingress
is held to the issue's targets: under 120 MB at its peak, and less than 10 % growth
from the first sample after the warm-up (the first 5 % of the calls) to the last.
The result goes to `.bench/bench-soak.json` and `.bench/history/`.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from tollgate_bench import bodies, load
from tollgate_bench.processes import rss_mb
from tollgate_bench.report import Target, save_json
from tollgate_bench.wholebox import SERVICES, Box, warm
from tollgate_shared import names

WARM_CALLS = 50
RSS_LIMIT_MB = 120.0
GROWTH_LIMIT_PCT = 10.0


def _say(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Sample:
    seconds: float  # since the load started
    calls: int  # answered so far (errors included)
    rss_mb: dict[str, float]  # per service


@dataclass(frozen=True)
class Memory:
    """One service's RSS over the soak: after the warm-up, the highest, the last."""

    start_mb: float
    peak_mb: float  # the highest sample or the kernel's high-water mark (VmHWM)
    end_mb: float

    @property
    def growth_pct(self) -> float:
        return (self.end_mb - self.start_mb) * 100 / self.start_mb


def memory(samples: list[Sample], name: str, warmup_calls: int, hwm_mb: float | None) -> Memory:
    """`start` is the first sample taken once `warmup_calls` were answered."""
    seen = [s for s in samples if name in s.rss_mb]
    if not seen:
        raise ValueError(f"no RSS sample of {name}")
    after = [s for s in seen if s.calls >= warmup_calls] or seen[-1:]
    peak = max(s.rss_mb[name] for s in seen)
    return Memory(after[0].rss_mb[name], max(peak, hwm_mb or 0.0), seen[-1].rss_mb[name])


def targets(ingress: Memory) -> list[Target]:
    return [
        Target(
            "ingress RSS at its peak",
            f"< {RSS_LIMIT_MB:g} MB",
            f"{ingress.peak_mb:.1f} MB",
            ingress.peak_mb < RSS_LIMIT_MB,
        ),
        Target(
            "ingress RSS growth after the warm-up",
            f"< {GROWTH_LIMIT_PCT:g} %",
            f"{ingress.growth_pct:+.1f} % ({ingress.start_mb:.1f} -> {ingress.end_mb:.1f} MB)",
            ingress.growth_pct < GROWTH_LIMIT_PCT,
        ),
    ]


async def spend_rows(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        count: int = await conn.fetchval(f'SELECT count(*) FROM "{names.SCHEMA_LEDGER}".spend_logs')
        return count
    finally:
        await conn.close()


async def wait_rows(database_url: str, expected: int, timeout_s: float) -> int:
    """The spend rows once `expected` are there, or what there is after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    rows = await spend_rows(database_url)
    while rows < expected and time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        rows = await spend_rows(database_url)
    return rows


def sample_rss(box: Box) -> dict[str, float]:
    out = {}
    for name, proc in box.procs.items():
        now, _peak = rss_mb(proc.pid)
        if now is not None:
            out[name] = now
    return out


async def soak(box: Box, calls: int, concurrency: int, chunk_s: int) -> tuple[list[Sample], int]:
    """Closed-loop chunks of about `chunk_s` seconds until `calls` are answered; one RSS
    sample before the load and after each chunk. Returns the samples and the errors."""
    body = bodies.request_body()
    headers = {"authorization": f"Bearer {bodies.MASTER_KEY}"}
    wrk = load.wrk_binary()
    script = load.write_wrk_script(box.work / "wrk-soak.lua", body, bodies.MASTER_KEY)
    samples = [Sample(0.0, 0, sample_rss(box))]
    done = errors = 0
    rate = 0.0
    start = time.perf_counter()
    last_said = start
    while done < calls:
        # Size the last chunks to land near `calls` rather than overshoot by a whole chunk.
        seconds = chunk_s if rate <= 0 else max(1, min(chunk_s, math.ceil((calls - done) / rate)))
        if wrk:
            res = await load.run_wrk(wrk, script, box.ingress_url, concurrency, seconds)
        else:
            res = await load.closed_loop(box.ingress_url, body, headers, concurrency, seconds)
        if res.requests == 0:
            raise RuntimeError(f"no call answered in {seconds} s: is ingress alive?")
        done += res.requests
        errors += res.errors
        rate = res.rps
        samples.append(Sample(time.perf_counter() - start, done, sample_rss(box)))
        if time.perf_counter() - last_said >= 60 or done >= calls:
            last_said = time.perf_counter()
            rss = samples[-1].rss_mb.get("ingress", 0.0)
            _say(
                f"{done:,} / {calls:,} calls, {rate:,.0f} req/s, errors {errors}, "
                f"ingress RSS {rss:.1f} MB"
            )
    return samples, errors


def describe(args: argparse.Namespace) -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "git_commit": commit or None,
        "calls": args.calls,
        "concurrency": args.concurrency,
        "chunk_s": args.chunk_seconds,
        "warmup_fraction": args.warmup,
        "load_generator": "wrk" if load.wrk_binary() else "python",
        "box": "ingress, ledger, exporter (one discarding webhook), alerter (discarding Slack "
        "webhook), NATS, PostgreSQL, Redis; nothing pinned",
    }


def report(
    samples: list[Sample],
    errors: int,
    rows: int | None,
    warmup_calls: int,
    hwm_mb: dict[str, float | None],
) -> dict[str, Any]:
    """The figures of a soak; `hwm_mb`, each service's VmHWM, catches a peak between
    two samples."""
    answered = samples[-1].calls
    seconds = samples[-1].seconds
    per_service = {
        name: memory(samples, name, warmup_calls, hwm_mb.get(name))
        for name in SERVICES
        if any(name in s.rss_mb for s in samples)
    }
    return {
        "calls": answered,
        "errors": errors,
        "seconds": seconds,
        "rps": answered / seconds if seconds else None,
        "warmup_calls": warmup_calls,
        "spend_rows": rows,
        "memory": {
            name: {**asdict(m), "growth_pct": m.growth_pct} for name, m in per_service.items()
        },
        "targets": [asdict(t) for t in targets(per_service["ingress"])],
    }


def print_report(result: dict[str, Any]) -> None:
    print()
    print(
        f"soak: {result['calls']:,} calls in {result['seconds']:.0f} s "
        f"({result['rps']:,.0f} req/s), errors {result['errors']}; growth measured after "
        f"the first {result['warmup_calls']:,} calls"
    )
    # wrk's count leaves out the calls in flight when a chunk ends; ingress answers and
    # logs those too, so the rows may exceed the count by up to c per chunk.
    print(f"spend rows logged: {result['spend_rows']:,} (calls wrk counted: {result['calls']:,})")
    print(f"{'process':<10} {'start MB':>9} {'peak MB':>9} {'end MB':>9} {'growth':>8}")
    for name, m in result["memory"].items():
        print(
            f"{name:<10} {m['start_mb']:9.1f} {m['peak_mb']:9.1f} {m['end_mb']:9.1f} "
            f"{m['growth_pct']:+7.1f}%"
        )
    print()
    print("targets:")
    for t in result["targets"]:
        verdict = "met " if t["met"] else "MISS"
        print(f"  [{verdict}] {t['name']}: {t['value']} (goal {t['goal']})")


async def main_async(args: argparse.Namespace) -> int:
    work = args.out / "soak-work"
    if work.exists():
        shutil.rmtree(work)  # fresh servers: the spend rows counted are this run's
    box = Box(work, say=_say)
    meta = describe(args)
    try:
        await box.start()
        warm(box.ingress_url, WARM_CALLS)
        assert box.urls is not None
        before = await wait_rows(box.urls.database_url, WARM_CALLS, 30)
        _say(f"soak: {args.calls:,} calls at c={args.concurrency} through the whole box")
        samples, errors = await soak(box, args.calls, args.concurrency, args.chunk_seconds)
        hwm = {name: rss_mb(proc.pid)[1] for name, proc in box.procs.items()}
        answered = samples[-1].calls - errors
        # Every answered call is logged: a sanity check that the box did all its work.
        rows = await wait_rows(box.urls.database_url, before + answered, 120) - before
    finally:
        box.stop()
    result = report(samples, errors, rows, int(args.calls * args.warmup), hwm)
    data = {"meta": meta, "result": result, "samples": [asdict(s) for s in samples]}
    path = save_json(data, args.out, "bench-soak")
    print_report(result)
    print(f"\nresults: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tollgate_bench.soak", description=__doc__)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--chunk-seconds", type=int, default=5, help="load between two RSS samples")
    parser.add_argument(
        "--warmup", type=float, default=0.05, help="share of the calls before growth is measured"
    )
    parser.add_argument("--out", type=Path, default=Path(".bench"), help="results and work dir")
    args = parser.parse_args(argv)
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
