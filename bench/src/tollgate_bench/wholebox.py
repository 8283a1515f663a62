"""The whole box under load: every Tollgate process unpinned, CPU time per logged call from /proc.

`python -m tollgate_bench.wholebox` (`./just bench-box`) starts what a user deploys on one
machine — NATS, PostgreSQL, Redis, ingress, ledger, exporter (one webhook destination
that discards) and alerter (Slack-compatible webhook that discards) — none of them pinned,
drives ingress with a closed loop, and reports for each process the CPU time (user +
system, children included) it spent per answered call. The `./just bench` run uses the
same machinery for its `box.*` rows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tollgate_bench import bodies, load
from tollgate_bench.load import LoadResult
from tollgate_bench.processes import Proc, rss_mb, start_process, stop_process, wait_http
from tollgate_bench.upstream import DISCARD_PATH, Upstream, start_upstream
from tollgate_devstack.embedded import EmbeddedStack, StackUrls, free_port
from tollgate_shared.provision import provision_url

# The processes whose CPU is counted, in the order they are reported.
SERVICES = ("ingress", "ledger", "exporter", "alerter")
SERVERS = ("nats", "postgres", "redis")
COUNTED = (*SERVICES, *SERVERS)

Say = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


# -- /proc ---------------------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after "(comm)": [0] state, [1] ppid, [11] utime, [12] stime, [13] cutime, [14] cstime.
    return text.rpartition(")")[2].split()


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is not None:
            out.setdefault(int(fields[1]), []).append(int(entry.name))
    return out


def tree_cpu_seconds(pid: int, children: dict[int, list[int]] | None = None) -> float | None:
    """CPU time of a process and all its descendants, live or already reaped."""
    fields = _stat(pid)
    if fields is None:
        return None
    kids = _children() if children is None else children
    ticks = sum(int(x) for x in fields[11:15])  # own + reaped children's
    total = ticks / os.sysconf("SC_CLK_TCK")
    for child in kids.get(pid, []):
        total += tree_cpu_seconds(child, kids) or 0.0
    return total


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def server_pids(root: int, pg_data: Path | None) -> dict[str, int]:
    """The NATS and Redis servers this process started, and PostgreSQL's postmaster."""
    found: dict[str, int] = {}
    kids = _children()
    for pid in kids.get(root, []):
        name = comm(pid)
        if name.startswith("nats-server"):
            found["nats"] = pid
        elif name.startswith("redis-server"):
            found["redis"] = pid
    if pg_data is not None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            found["postgres"] = int((pg_data / "postmaster.pid").read_text().split()[0])
    return found


@dataclass
class CpuSnapshot:
    at: float
    seconds: dict[str, float]


def snapshot(pids: dict[str, int]) -> CpuSnapshot:
    kids = _children()
    seconds = {}
    for name, pid in pids.items():
        value = tree_cpu_seconds(pid, kids)
        if value is not None:
            seconds[name] = value
    return CpuSnapshot(time.perf_counter(), seconds)


def per_call_ms(before: CpuSnapshot, after: CpuSnapshot, calls: int) -> dict[str, float]:
    """CPU milliseconds per call for each process seen at both ends, plus `total`."""
    out = {
        name: (after.seconds[name] - before.seconds[name]) * 1000 / calls
        for name in before.seconds
        if name in after.seconds and calls
    }
    out["total"] = sum(out.values())
    return out


# -- the box -------------------------------------------------------------------------------------


def box_config(upstream: Upstream, discard_url: str) -> dict[str, Any]:
    """Spend logs (default), one discarding webhook export, alerts to a discarding webhook."""
    return {
        "model_list": [
            {
                "model_name": bodies.MODEL,
                "litellm_params": {
                    "model": f"openai/{bodies.UPSTREAM_MODEL}",
                    "api_base": upstream.base_url,
                    "api_key": bodies.UPSTREAM_KEY,
                    "input_cost_per_token": 0.000003,
                    "output_cost_per_token": 0.000007,
                },
                "model_info": {"id": f"{bodies.MODEL}-1"},
            }
        ],
        "litellm_settings": {"callbacks": ["webhook"]},
        "general_settings": {
            "master_key": bodies.MASTER_KEY,
            "alerting": ["slack"],
            "alerting_threshold": 300,
        },
        "environment_variables": {"WEBHOOK_URL": discard_url, "SLACK_WEBHOOK_URL": discard_url},
    }


@dataclass
class Box:
    """The services of one machine, started on existing servers (`urls`) or embedded ones."""

    work: Path
    urls: StackUrls | None = None
    upstream: Upstream | None = None
    say: Say = _stderr
    workers: int = 1
    # The Tollgate services started (ingress always): `--services ingress` measures
    # ingress with the consumers stopped, as issue 18's workers target is stated.
    services: tuple[str, ...] = SERVICES
    procs: dict[str, Proc] = field(default_factory=dict)
    stack: EmbeddedStack | None = None
    _own_upstream: bool = False

    @property
    def ingress_url(self) -> str:
        return f"{self.procs['ingress'].url}/v1/chat/completions"

    def pids(self) -> dict[str, int]:
        pg = self.stack.data_dir / "pg" if self.stack is not None else None
        found = {name: proc.pid for name, proc in self.procs.items()}
        found.update(server_pids(os.getpid(), pg))
        return found

    def env(self, port: int, config: Path) -> dict[str, str]:
        assert self.urls is not None
        return {
            **self.urls.env(),
            "TOLLGATE_CONFIG": str(config),
            "TOLLGATE_PORT": str(port),
            "TOLLGATE_HOST": "127.0.0.1",
            "TOLLGATE_LOG_LEVEL": "warning",
        }

    async def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        if self.upstream is None:
            self.upstream = start_upstream(self.work, use_nginx=True, cpus=None)
            self._own_upstream = True
        if self.urls is None:
            self.say("whole box: starting embedded NATS, PostgreSQL and Redis")
            self.stack = EmbeddedStack(self.work / "stack")
            self.urls = self.stack.start()
        await provision_url(self.urls.nats_url)
        discard = f"http://127.0.0.1:{self.upstream.port}{DISCARD_PATH}"
        config = self.work / "box-config.yaml"
        config.write_text(yaml.safe_dump(box_config(self.upstream, discard), sort_keys=False))
        migrate = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tollgate_ledger", "migrate",
            env={**os.environ, **self.env(0, config)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await migrate.communicate()
        if migrate.returncode != 0:
            raise RuntimeError(f"ledger migrate failed:\n{out.decode(errors='replace')[-2000:]}")
        for name in SERVICES:
            if name not in self.services and name != "ingress":
                continue
            port = free_port()
            env = self.env(port, config)
            if name == "ingress":
                env["TOLLGATE_SPOOL_PATH"] = str(self.work / "box-spool.sqlite3")
                if self.workers > 1:
                    env["TOLLGATE_INGRESS_WORKERS"] = str(self.workers)
            cmd = [sys.executable, "-m", f"tollgate_{name}"]
            proc = start_process(f"box-{name}", cmd, self.work, env, None)
            proc.url = f"http://127.0.0.1:{port}"
            self.procs[name] = proc
        for proc in self.procs.values():
            wait_http(proc, f"{proc.url}/health", 90)

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            stop_process(proc)
        self.procs.clear()
        if self._own_upstream and self.upstream is not None:
            stop_process(self.upstream.proc)
        if self.stack is not None:
            self.stack.stop()


@dataclass
class BoxRun:
    result: LoadResult
    cpu_ms: dict[str, float]  # per process, and "total"


async def drive(box: Box, concurrency: int, duration_s: int, settle_s: float = 3.0) -> BoxRun:
    """One closed-loop run against ingress; CPU counted until the pipeline has caught up."""
    url = box.ingress_url
    body = bodies.request_body()
    headers = {"authorization": f"Bearer {bodies.MASTER_KEY}"}
    wrk = load.wrk_binary()
    pids = box.pids()
    before = snapshot(pids)
    if wrk:
        script = load.write_wrk_script(box.work / "wrk-box.lua", body, bodies.MASTER_KEY)
        res = await load.run_wrk(wrk, script, url, concurrency, duration_s)
    else:
        res = await load.closed_loop(url, body, headers, concurrency, duration_s)
    # The consumers run behind the load: give them time to finish what it caused.
    await asyncio.sleep(settle_s)
    after = snapshot(pids)
    return BoxRun(res, per_call_ms(before, after, max(1, res.requests - res.errors)))


def warm(url: str, requests: int) -> None:
    import httpx

    headers = {"authorization": f"Bearer {bodies.MASTER_KEY}", "content-type": "application/json"}
    with httpx.Client(timeout=30) as client:
        for _ in range(requests):
            r = client.post(url, content=bodies.request_body(), headers=headers)
            if r.status_code != 200:
                raise RuntimeError(f"ingress answered {r.status_code}: {r.text[:300]}")


def table(runs: list[BoxRun]) -> Iterator[str]:
    """Median CPU ms per call for each process across `runs`."""
    from statistics import median

    yield f"{'process':<10} {'CPU ms/call':>12}"
    for name in (*COUNTED, "total"):
        values = [r.cpu_ms[name] for r in runs if name in r.cpu_ms]
        if values:
            yield f"{name:<10} {median(values):12.3f}"
    rps = median(r.result.rps for r in runs)
    p50 = median(r.result.p50_ms or 0 for r in runs)
    p99 = median(r.result.p99_ms or 0 for r in runs)
    errors = sum(r.result.errors for r in runs)
    yield f"throughput {rps:,.0f} req/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms, errors {errors}"


async def main_async(args: argparse.Namespace) -> int:
    box = Box(args.out / "box-work", workers=args.workers, services=tuple(args.services))
    try:
        await box.start()
        warm(box.ingress_url, 50)
        runs = []
        for rep in range(args.repeats):
            run = await drive(box, args.concurrency, args.seconds)
            runs.append(run)
            _stderr(
                f"run {rep + 1}: {run.result.rps:,.0f} req/s, total "
                f"{run.cpu_ms['total']:.3f} ms CPU/call"
            )
        if args.lag_rps:
            from tollgate_bench.lag import measure_lag

            assert box.urls is not None
            res = await measure_lag(
                box.ingress_url,
                bodies.request_body(),
                {"authorization": f"Bearer {bodies.MASTER_KEY}"},
                box.urls.database_url,
                args.lag_rps,
                args.lag_seconds,
            )
            print(
                f"lag at {args.lag_rps:,}/s for {args.lag_seconds:g} s: "
                f"sent {res.load.requests:,}, {res.load.rps:,.0f} req/s answered, "
                f"response -> spend row p50 "
                f"{res.pct(50) or 0:.1f} ms, p95 {res.pct(95) or 0:.1f} ms, p99 "
                f"{res.pct(99) or 0:.1f} ms; {res.missing} rows never seen, "
                f"{res.load.errors} calls failed; ingress RSS "
                f"{rss_mb(box.procs['ingress'].pid)[0] or 0:.1f} MB"
            )
        if args.py_spy:
            from tollgate_bench.profiling import record, top_frames

            for name in args.py_spy:
                raw = args.out / f"profile-box-{name}.txt"
                spy = asyncio.create_task(record(box.procs[name].pid, args.seconds - 1, raw))
                await drive(box, args.concurrency, args.seconds)
                if await spy:
                    print(top_frames(raw, 25))
        if runs:
            print("\n".join(table(runs)))
    finally:
        box.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tollgate_bench.wholebox", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(".bench"))
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1, help="TOLLGATE_INGRESS_WORKERS")
    parser.add_argument(
        "--services",
        nargs="+",
        choices=SERVICES,
        default=list(SERVICES),
        help="the services started (ingress always); the others stay stopped",
    )
    parser.add_argument(
        "--py-spy", nargs="*", choices=SERVICES, help="then profile these services, one run each"
    )
    parser.add_argument(
        "--lag-rps",
        type=int,
        default=0,
        help="then the lag run alone: this fixed rate, response -> spend row (`just bench`'s "
        "full plan: 1000 for 300 s)",
    )
    parser.add_argument("--lag-seconds", type=float, default=300.0)
    args = parser.parse_args(argv)
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
