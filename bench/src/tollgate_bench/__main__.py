"""Runs the benchmarks and prints one table: `python -m tollgate_bench [--size quick]`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from tollgate_bench.plan import PROFILES
from tollgate_bench.report import Results
from tollgate_bench.runner import Bench, Options


def write_json(results: Results, out: Path) -> Path:
    """`<out>/bench-<size>.json` (the latest) plus a timestamped copy in `<out>/history/`."""
    data = json.dumps(results.to_json(), indent=2, default=str)
    latest = out / f"bench-{results.plan.name}.json"
    latest.write_text(data)
    history = out / "history"
    history.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (history / f"bench-{results.plan.name}-{stamp}.json").write_text(data)
    return latest


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
    results = asyncio.run(Bench(opts).run())
    path = write_json(results, opts.out)
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
