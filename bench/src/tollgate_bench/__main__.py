"""Runs the benchmarks and prints one table: `python -m tollgate_bench [--size quick]`."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
from pathlib import Path

import yaml

from tollgate_bench import bodies
from tollgate_bench.plan import PROFILES
from tollgate_bench.report import Results, save_json
from tollgate_bench.runner import Bench, Options
from tollgate_devstack.embedded import EmbeddedStack
from tollgate_shared.provision import provision_url
from tollgate_shared.publishing import connect_nats

ONLY = ("ledger",)


def write_json(results: Results, out: Path, part: str = "") -> Path:
    """`<out>/bench-<size>[-<part>].json` (the latest) plus a timestamped copy in
    `<out>/history/`."""
    name = f"bench-{results.plan.name}{f'-{part}' if part else ''}"
    latest: Path = save_json(results.to_json(), out, name)
    return latest


async def ledger_only(bench: Bench) -> Results:
    """Only the ledger ingest and its COPY floor (`--only ledger`): NATS, PostgreSQL and
    the ledger, no upstream, gateways or load generator; the same layout and measurement."""
    if bench.work.exists():
        shutil.rmtree(bench.work)
    bench.work.mkdir(parents=True)
    pinning = bench.layout_cpus()
    bench.config_path.write_text(
        yaml.safe_dump({"general_settings": {"master_key": bodies.MASTER_KEY}})
    )
    try:
        if bench.opts.urls is None:
            bench.stack = EmbeddedStack(bench.work / "stack")
            bench.urls = bench.stack.start()
        else:
            bench.urls = bench.opts.urls
        await provision_url(bench.urls.nats_url)
        bench.nc = await connect_nats(bench.urls.nats_url, "tollgate-bench")
        bench.results.meta = {"profile": bench.plan.name, "pinning": pinning, "only": "ledger"}
        migrate = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tollgate_ledger", "migrate",
            env={**os.environ, **bench.service_env(0)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await migrate.communicate()
        if migrate.returncode != 0:
            bench.ledger_skip = "not run: ledger unavailable (migrate failed)"
            bench.say(f"ledger migrate failed:\n{output.decode(errors='replace')[-3000:]}")
        else:
            bench.ledger = bench.spawn_ledger(bench.support_cpus)
        keys = ["ledger.ingest.ledger", "ledger.ingest.copy"]
        await bench.phase("ledger ingest", keys, bench.ledger_phase())
    finally:
        await bench.teardown()
    return bench.results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tollgate_bench", description=__doc__)
    parser.add_argument("--size", choices=sorted(PROFILES), default="full")
    parser.add_argument("--out", type=Path, default=Path(".bench"), help="results and work dir")
    parser.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM leg")
    parser.add_argument("--no-nginx", action="store_true", help="use the Python upstream")
    parser.add_argument("--no-wrk", action="store_true", help="use the Python load generator")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument(
        "--py-spy", action="store_true", help="sample each gateway with py-spy at top concurrency"
    )
    parser.add_argument(
        "--only", choices=ONLY, help="run one part: `ledger` = ledger ingest beside raw COPY"
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    opts = Options(
        plan=PROFILES[args.size],
        out=args.out.resolve(),
        litellm=not args.no_litellm,
        use_nginx=not args.no_nginx,
        use_wrk=not args.no_wrk,
        pin=not args.no_pin,
        profile=args.py_spy,
    )
    bench = Bench(opts)
    results = asyncio.run(ledger_only(bench) if args.only == "ledger" else bench.run())
    path = write_json(results, opts.out, args.only or "")
    print()
    print(f"Tollgate bench ({results.plan.name}) - {results.meta.get('pinning', '')}")
    print(results.table())
    print()
    print(results.summary())
    print()
    print(f"results: {path}")
    failed = [r.key for r in results.rows.values() if r.status.startswith("not run")]
    return 1 if failed and len(failed) == len(results.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
