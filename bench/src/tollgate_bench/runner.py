"""One bench run: start everything, measure each part, stop everything, return the results.

CPU layout on a machine with two or more cores (`pin=True`): the gateway under
test (Tollgate ingress or the LiteLLM proxy, one worker each) gets the first
core to itself; the load generator, the upstream, NATS, PostgreSQL, Redis and
the ledger share the others. For the ledger ingest run the roles flip: the
ledger (and, for the floor, the COPY client) run on the first core while
PostgreSQL and NATS stay on the others, so both sides get the same CPUs.

Last comes the whole box, nothing pinned: the pinned ingress, ledger and servers
are stopped, `wholebox.Box` starts every service on fresh servers, LiteLLM and
the upstream are moved onto every CPU, and the same load generator drives the
upstream alone, the box and LiteLLM in turn; then the lag run goes through the box.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from nats.aio.client import Client as NATS

from tollgate_bench import bodies, lag, ledger_ingest, load
from tollgate_bench.plan import Plan
from tollgate_bench.processes import (
    Proc,
    cpu_seconds,
    pin,
    repin,
    rss_mb,
    start_process,
    stop_process,
    wait_http,
)
from tollgate_bench.report import BOX_PROCESSES, LEGS, Results, Row, from_runs
from tollgate_bench.upstream import Upstream, start_upstream
from tollgate_bench.wholebox import Box, per_call_ms, snapshot
from tollgate_devstack.embedded import EmbeddedStack, StackUrls, free_port
from tollgate_shared.provision import provision_url
from tollgate_shared.publishing import connect_nats

Say = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


@dataclass
class Options:
    plan: Plan
    out: Path
    litellm: bool = True
    use_nginx: bool = True
    use_wrk: bool = True
    pin: bool = True
    profile: bool = False
    # Existing servers (tests); when None the run starts its own embedded ones.
    urls: StackUrls | None = None
    # The LiteLLM proxy's own venv; default `<out>/litellm-venv` (bench/prepare.sh makes it).
    litellm_venv: Path | None = None
    say: Say = _stderr

    @property
    def litellm_bin(self) -> Path:
        return (self.litellm_venv or self.out / "litellm-venv") / "bin" / "litellm"


@dataclass
class Leg:
    name: str
    url: str  # plain completions
    stream_url: str
    headers: dict[str, str]
    proc: Proc | None = None  # the gateway process, for RSS and profiling


@dataclass
class Bench:
    opts: Options
    work: Path = field(init=False)
    gateway_cpus: set[int] | None = None
    support_cpus: set[int] | None = None
    all_cpus: set[int] | None = None  # what the run may use: the whole box's
    urls: StackUrls | None = None
    stack: EmbeddedStack | None = None
    nc: NATS | None = None
    upstream: Upstream | None = None
    ingress: Proc | None = None
    ledger: Proc | None = None
    litellm: Proc | None = None
    litellm_port: int = 0
    litellm_skip: str | None = None
    ledger_skip: str | None = None
    legs: dict[str, Leg] = field(default_factory=dict)
    box: Box | None = None
    box_legs: dict[str, Leg] = field(default_factory=dict)
    config_path: Path = field(init=False)
    results: Results = field(init=False)

    def __post_init__(self) -> None:
        self.work = self.opts.out / "work"
        self.config_path = self.work / "config.yaml"
        self.results = Results(self.opts.plan, {})

    @property
    def plan(self) -> Plan:
        return self.opts.plan

    def say(self, msg: str) -> None:
        self.opts.say(msg)

    # -- setup ------------------------------------------------------------------
    def layout_cpus(self) -> str:
        cpus = sorted(os.sched_getaffinity(0))
        if not self.opts.pin or len(cpus) < 2:
            return f"not pinned ({len(cpus)} CPUs available to the run)"
        self.gateway_cpus, self.support_cpus = {cpus[0]}, set(cpus[1:])
        self.all_cpus = set(cpus)
        # Everything this process starts from now on inherits the support CPUs.
        pin(0, self.support_cpus)
        return (
            f"gateway under test (one worker) on CPU {cpus[0]}; load generator, upstream, "
            f"NATS, PostgreSQL, Redis and ledger on CPU {','.join(map(str, cpus[1:]))}; "
            f"ledger ingest run: ledger and COPY client on CPU {cpus[0]}; "
            f"whole box: nothing pinned"
        )

    def write_config(self, upstream: Upstream) -> None:
        def model(name: str, api_base: str) -> dict[str, Any]:
            return {
                "model_name": name,
                "litellm_params": {
                    "model": f"openai/{bodies.UPSTREAM_MODEL}",
                    "api_base": api_base,
                    "api_key": bodies.UPSTREAM_KEY,
                    "input_cost_per_token": 0.000003,
                    "output_cost_per_token": 0.000007,
                },
                "model_info": {"id": f"{name}-1"},
            }

        cfg = {
            "model_list": [
                model(bodies.MODEL, upstream.base_url),
                model(bodies.STREAM_MODEL, upstream.stream_base_url),
            ],
            "general_settings": {"master_key": bodies.MASTER_KEY},
        }
        self.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))

    def service_env(self, port: int) -> dict[str, str]:
        assert self.urls is not None
        return {
            **self.urls.env(),
            "TOLLGATE_CONFIG": str(self.config_path),
            "TOLLGATE_PORT": str(port),
            "TOLLGATE_HOST": "127.0.0.1",
            "TOLLGATE_LOG_LEVEL": "warning",
        }

    def start_litellm(self) -> None:
        if not self.opts.litellm:
            self.litellm_skip = "skipped: LiteLLM leg turned off"
            return
        if not self.opts.litellm_bin.exists():
            self.litellm_skip = (
                f"skipped: no LiteLLM at {self.opts.litellm_bin} (`just bench` installs it)"
            )
            return
        self.litellm_port = free_port()
        cmd = [
            str(self.opts.litellm_bin),
            "--config", str(self.config_path),
            "--host", "127.0.0.1",
            "--port", str(self.litellm_port),
            "--num_workers", "1",
        ]  # fmt: skip
        env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False"}
        self.litellm = start_process("litellm", cmd, self.work, env, self.gateway_cpus)
        self.litellm.url = f"http://127.0.0.1:{self.litellm_port}"

    async def setup(self) -> None:
        opts = self.opts
        if self.work.exists():
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True)
        pinning = self.layout_cpus()
        self.upstream = start_upstream(self.work, opts.use_nginx, self.support_cpus)
        self.write_config(self.upstream)
        self.start_litellm()  # slow to import: let it start while the rest comes up
        if opts.urls is None:
            self.say("starting embedded NATS, PostgreSQL and Redis")
            self.stack = EmbeddedStack(self.work / "stack")
            self.urls = self.stack.start()
        else:
            self.urls = opts.urls
        await provision_url(self.urls.nats_url)
        self.nc = await connect_nats(self.urls.nats_url, "tollgate-bench")
        self.results.meta = self.describe(pinning)
        self.say("starting the ledger and ingress")
        await self.start_pipeline()
        self.legs["direct"] = Leg(
            "direct", self.upstream.chat_url, self.upstream.stream_url, {}, self.upstream.proc
        )
        assert self.ingress is not None
        self.add_gateway_leg("tollgate", self.ingress)
        if self.litellm is not None:
            try:
                wait_http(
                    self.litellm, f"http://127.0.0.1:{self.litellm_port}/health/liveliness", 120
                )
                self.add_gateway_leg("litellm", self.litellm)
            except RuntimeError as exc:
                self.litellm_skip = f"not run: LiteLLM did not start ({_first_line(exc)})"
                self.say(str(exc))

    async def start_pipeline(self) -> None:
        """Ledger (consuming) and ingress, as real processes."""
        migrate = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tollgate_ledger", "migrate",
            env={**os.environ, **self.service_env(0)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await migrate.communicate()
        if migrate.returncode != 0:
            self.ledger_skip = "not run: ledger unavailable (migrate failed)"
            self.say(f"ledger migrate failed:\n{output.decode(errors='replace')[-3000:]}")
        else:
            try:
                self.ledger = self.spawn_ledger(self.support_cpus)
            except RuntimeError as exc:
                self.ledger_skip = "not run: ledger unavailable"
                self.say(str(exc))
        port = free_port()
        env = {
            **self.service_env(port),
            "TOLLGATE_SPOOL_PATH": str(self.work / "ingress-spool.sqlite3"),
        }
        self.ingress = start_process(
            "ingress", [sys.executable, "-m", "tollgate_ingress"], self.work, env, self.gateway_cpus
        )
        self.ingress.url = f"http://127.0.0.1:{port}"
        wait_http(self.ingress, f"{self.ingress.url}/health", 60)

    def spawn_ledger(self, cpus: set[int] | None, wait: bool = True) -> Proc:
        port = free_port()
        proc = start_process(
            "ledger", [sys.executable, "-m", "tollgate_ledger"], self.work,
            self.service_env(port), cpus,
        )  # fmt: skip
        proc.url = f"http://127.0.0.1:{port}"
        if wait:
            wait_http(proc, f"http://127.0.0.1:{port}/health", 60)
        return proc

    def add_gateway_leg(self, name: str, proc: Proc) -> None:
        base = f"{proc.url}/v1/chat/completions"
        auth = {"authorization": f"Bearer {bodies.MASTER_KEY}"}
        self.legs[name] = Leg(name, base, base, auth, proc)

    def describe(self, pinning: str) -> dict[str, Any]:
        def version(cmd: list[str]) -> str | None:
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
            except OSError:
                return None
            text = (r.stdout + r.stderr).strip().splitlines()
            return text[0] if text else None

        cpu_model = None
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
        litellm_version = None
        lit_py = self.opts.litellm_bin.parent / "python"
        if lit_py.exists():
            litellm_version = version(
                [str(lit_py), "-c", "import importlib.metadata as m; print(m.version('litellm'))"]
            )
        wrk = load.wrk_binary() if self.opts.use_wrk else None
        assert self.upstream is not None
        return {
            "profile": self.plan.name,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "cpu_model": cpu_model,
            "python": platform.python_version(),
            "pinning": pinning,
            "upstream": self.upstream.kind,
            "upstream_version": version(["nginx", "-v"]) if self.upstream.kind == "nginx" else None,
            "load_generator": "wrk" if wrk else "python",
            "wrk_version": version([wrk, "-v"]) if wrk else None,
            "fixed_rate_generator": "python open loop (aiohttp, asyncio)",
            "litellm_version": litellm_version,
            "git_commit": version(["git", "rev-parse", "--short", "HEAD"]),
            "gateways": "one worker each: Tollgate ingress (uvicorn, uvloop, httptools); "
            "LiteLLM proxy `--num_workers 1`, no database, defaults otherwise",
        }

    async def teardown(self) -> None:
        if self.box is not None:
            self.box.stop()
        for proc in (self.ingress, self.litellm, self.ledger):
            if proc is not None:
                stop_process(proc)
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.drain()
        if self.upstream is not None:
            stop_process(self.upstream.proc)
        if self.stack is not None:
            self.stack.stop()

    # -- measuring ----------------------------------------------------------------
    def leg_status(self, name: str, legs: dict[str, Leg] | None = None) -> str | None:
        """None when the leg can be measured, else why not (shown in its rows)."""
        if name in (self.legs if legs is None else legs):
            return None
        if name == "litellm":
            return self.litellm_skip or "not run: LiteLLM unavailable"
        return f"not run: {name} unavailable"

    async def warm(self, leg: Leg, body: bytes, stream: bool = False) -> None:
        """A few requests first: connections open, caches warm, and a broken leg shows here."""
        async with httpx.AsyncClient(timeout=30) as client:
            for _ in range(max(1, self.plan.warmup_requests)):
                r = await client.post(
                    leg.stream_url if stream else leg.url,
                    content=body,
                    headers={"content-type": "application/json", **leg.headers},
                )
                if r.status_code != 200:
                    raise RuntimeError(f"{leg.name} answered {r.status_code}: {r.text[:300]}")

    def sample_rss(self, leg: Leg, samples: dict[str, list[float]]) -> None:
        if leg.proc is not None:
            now, _peak = rss_mb(leg.proc.pid)
            if now is not None:
                samples.setdefault(leg.name, []).append(now)

    async def closed_run(self, leg: Leg, concurrency: int, script: Path | None) -> load.LoadResult:
        wrk = load.wrk_binary() if self.opts.use_wrk else None
        if wrk and script is not None:
            run = load.run_wrk(wrk, script, leg.url, concurrency, self.plan.duration_s)
        else:
            run = load.closed_loop(
                leg.url, bodies.request_body(), leg.headers, concurrency, self.plan.duration_s
            )
        return await self.with_cpu(leg, run)

    @staticmethod
    async def with_cpu(leg: Leg, run: Any) -> load.LoadResult:
        """Run a load and note the server's CPU time per answered request."""
        before = cpu_seconds(leg.proc.pid) if leg.proc else None
        res: load.LoadResult = await run
        after = cpu_seconds(leg.proc.pid) if leg.proc else None
        if before is None or after is None or not res.requests:
            return res
        return replace(res, cpu_ms_per_request=(after - before) * 1000 / res.requests)

    async def gateway_closed(self) -> None:
        body = bodies.request_body()
        legs = [self.legs[n] for n in LEGS if n in self.legs]
        for leg in legs:
            await self.warm(leg, body)
        scripts = {
            leg.name: load.write_wrk_script(
                self.work / f"wrk-{leg.name}.lua",
                body,
                leg.headers.get("authorization", "").removeprefix("Bearer ") or None,
            )
            for leg in legs
        }
        rss: dict[str, list[float]] = {}
        for c in self.plan.concurrencies:
            runs: dict[str, list[load.LoadResult]] = {leg.name: [] for leg in legs}
            for rep in range(self.plan.repeats):
                # Interleaved, so a noisy moment hurts every leg alike.
                for leg in legs:
                    profiling = None
                    if (
                        self.opts.profile
                        and leg.name != "direct"
                        and leg.proc is not None
                        and c == self.plan.concurrencies[-1]
                        and rep == 0
                    ):
                        profiling = asyncio.create_task(
                            profiling_run(leg, max(1, self.plan.duration_s - 1), self.opts.out, c)
                        )
                    res = await self.closed_run(leg, c, scripts[leg.name])
                    if profiling is not None:
                        report = await profiling
                        self.say(report)
                    runs[leg.name].append(res)
                    self.sample_rss(leg, rss)
                    self.say(
                        f"c={c} {leg.name} run {rep + 1}: {res.rps:,.0f} req/s, "
                        f"p50 {res.p50_ms or 0:.2f} ms, errors {res.errors}"
                    )
            self.legs_rows(f"gateway.c{c}", f"closed loop c={c}", runs, rss)

    def legs_rows(
        self,
        prefix: str,
        bench: str,
        runs: dict[str, list[load.LoadResult]],
        rss: dict[str, list[float]] | None,
        unit: str = "req/s",
        legs: dict[str, Leg] | None = None,
    ) -> None:
        direct = None
        for name in LEGS:
            key = f"{prefix}.{name}"
            status = self.leg_status(name, legs)
            if status is not None:
                self.results.add(Row(key, bench, name, status=status))
                continue
            row = from_runs(Row(key, bench, name, unit=unit), runs.get(name, []))
            if name == "direct":
                direct = row
                row.note = f"{self.upstream.kind if self.upstream else '?'} upstream alone"
            elif direct is not None and direct.p50_ms is not None and row.p50_ms is not None:
                row.overhead_ms = row.p50_ms - direct.p50_ms
            if rss and rss.get(name):
                row.rss_mb = max(rss[name])
            self.results.add(row)

    async def gateway_rate(self) -> None:
        body = bodies.request_body()
        legs = [self.legs[n] for n in LEGS if n in self.legs]
        rss: dict[str, list[float]] = {}
        runs: dict[str, list[load.LoadResult]] = {leg.name: [] for leg in legs}
        for rep in range(self.plan.rate_repeats):
            for leg in legs:
                res = await self.with_cpu(
                    leg,
                    load.open_loop(
                        leg.url,
                        body,
                        leg.headers,
                        self.plan.rate_rps,
                        self.plan.rate_duration_s,
                        drain_s=self.plan.drain_s,
                    ),
                )
                runs[leg.name].append(res)
                self.sample_rss(leg, rss)
                self.say(
                    f"{self.plan.rate_rps} req/s {leg.name} run {rep + 1}: "
                    f"p50 {res.p50_ms or 0:.2f} ms, p99 {res.p99_ms or 0:.2f} ms, "
                    f"errors {res.errors}"
                )
        self.legs_rows("gateway.rate", f"fixed rate {self.plan.rate_rps}/s", runs, rss)
        for name in LEGS:
            row = self.results.rows[f"gateway.rate.{name}"]
            if row.ok:
                row.note = (row.note + "; " if row.note else "") + (
                    f"open loop, latency from when due; unanswered {self.plan.drain_s:g} s "
                    "after the last send = error"
                )

    async def streaming(self) -> None:
        legs = [self.legs[n] for n in LEGS if n in self.legs]
        runs: dict[str, list[load.LoadResult]] = {}
        for leg in legs:
            model = bodies.STREAM_MODEL if leg.name != "direct" else bodies.MODEL
            body = bodies.request_body(model, stream=True)
            await self.warm(leg, body, stream=True)
            res = await load.time_to_first_token(
                leg.stream_url, body, leg.headers, self.plan.ttft_requests
            )
            runs[leg.name] = [res]
            self.say(f"TTFT {leg.name}: p50 {res.p50_ms or 0:.2f} ms, errors {res.errors}")
        self.legs_rows("stream.ttft", "stream TTFT", runs, None, unit="")
        for name in LEGS:
            row = self.results.rows[f"stream.ttft.{name}"]
            row.throughput = None  # sequential requests: a rate here would mislead
            if row.ok:
                row.note = (row.note + "; " if row.note else "") + "time to first content delta"

    # -- the whole box, unpinned ------------------------------------------------------
    async def stop_pinned(self) -> None:
        """The pinned ingress, ledger and servers: the whole box starts on fresh ones."""
        for proc in (self.ingress, self.ledger):
            if proc is not None:
                stop_process(proc)
        self.ingress = self.ledger = None
        self.legs.pop("tollgate", None)
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.drain()
            self.nc = None
        if self.stack is not None:
            self.stack.stop()
            self.stack = None

    async def whole_box(self) -> None:
        """Every service and server unpinned beside LiteLLM unpinned, then the lag run."""
        await self.stop_pinned()
        if self.all_cpus:
            # The box, wrk and the lag poller inherit every CPU; LiteLLM and the
            # upstream, already running, are moved there thread by thread.
            pin(0, self.all_cpus)
            for proc in (self.litellm, self.upstream.proc if self.upstream else None):
                if proc is not None:
                    repin(proc.pid, self.all_cpus)
        self.say("whole box: starting every service, nothing pinned")
        self.box = Box(self.work / "box", urls=self.opts.urls, upstream=self.upstream, say=self.say)
        await self.box.start()
        auth = {"authorization": f"Bearer {bodies.MASTER_KEY}"}
        self.box_legs = {"direct": self.legs["direct"]}
        self.box_legs["tollgate"] = Leg(
            "tollgate", self.box.ingress_url, self.box.ingress_url, auth, self.box.procs["ingress"]
        )
        if "litellm" in self.legs:
            self.box_legs["litellm"] = self.legs["litellm"]
        await self.box_closed(self.box)
        await self.box_lag(self.box)

    async def box_closed(self, box: Box) -> None:
        body = bodies.request_body()
        legs = [self.box_legs[n] for n in LEGS if n in self.box_legs]
        for leg in legs:
            await self.warm(leg, body)
        scripts = {
            leg.name: load.write_wrk_script(
                self.work / f"wrk-box-{leg.name}.lua",
                body,
                leg.headers.get("authorization", "").removeprefix("Bearer ") or None,
            )
            for leg in legs
        }
        pids = box.pids()
        cmax = self.plan.concurrencies[-1]
        cpu_runs: list[dict[str, float]] = []
        rss: dict[str, list[float]] = {}
        for c in self.plan.concurrencies:
            runs: dict[str, list[load.LoadResult]] = {leg.name: [] for leg in legs}
            for rep in range(self.plan.repeats):
                for leg in legs:
                    if leg.name != "tollgate":
                        res = await self.closed_run(leg, c, scripts[leg.name])
                    elif c != cmax:
                        # CPU per call is read at the top concurrency only: at c=1 the
                        # consumers' idle polling over the settling time would dominate it.
                        res = await self.closed_run(leg, c, scripts[leg.name])
                        res = replace(res, cpu_ms_per_request=None)
                    else:
                        before = snapshot(pids)
                        res = await self.closed_run(leg, c, scripts[leg.name])
                        # The consumers run behind the load: their CPU counts once they
                        # have finished what it caused (and before the next leg runs).
                        await asyncio.sleep(self.plan.box_settle_s)
                        cpu = per_call_ms(before, snapshot(pids), max(1, res.requests - res.errors))
                        res = replace(res, cpu_ms_per_request=cpu["total"])
                        cpu_runs.append(cpu)
                    runs[leg.name].append(res)
                    self.sample_rss(leg, rss)
                    self.say(
                        f"whole box c={c} {leg.name} run {rep + 1}: {res.rps:,.0f} req/s, "
                        f"p50 {res.p50_ms or 0:.2f} ms, p99 {res.p99_ms or 0:.2f} ms, "
                        f"CPU {res.cpu_ms_per_request or 0:.3f} ms/req, errors {res.errors}"
                    )
            self.legs_rows(f"box.c{c}", f"whole box c={c}", runs, rss, legs=self.box_legs)
            cpu_note = "; CPU = every process" if c == cmax else ""
            for name, note in (
                ("tollgate", f"all services, NATS, PostgreSQL, Redis{cpu_note}"),
                ("litellm", "one process, no database"),
            ):
                row = self.results.rows[f"box.c{c}.{name}"]
                if row.ok:
                    row.note = f"unpinned; {note}"
        for name in BOX_PROCESSES:
            values = [run[name] for run in cpu_runs if name in run]
            row = Row(f"box.cpu.{name}", f"whole box CPU/call c={cmax}", name, unit="")
            if not values:
                row.status = "not run: not a process of this run (an existing server)"
            else:
                row.cpu_ms_per_request = statistics.median(values)
                row.runs = len(values)
                row.note = "CPU ms per logged call (user + system, children included)"
            self.results.add(row)

    async def box_lag(self, box: Box) -> None:
        leg = self.box_legs["tollgate"]
        assert box.urls is not None
        res = await lag.measure_lag(
            leg.url,
            bodies.request_body(),
            leg.headers,
            box.urls.database_url,
            self.plan.lag_rps,
            self.plan.lag_duration_s,
        )
        bench = f"lag at {self.plan.lag_rps:,}/s, {self.plan.lag_duration_s:g} s, whole box"
        row = Row("box.lag.tollgate", bench, "tollgate", unit="req/s", tool=res.load.tool)
        row.throughput = res.load.rps
        row.p50_ms, row.p95_ms, row.p99_ms = res.pct(50), res.pct(95), res.pct(99)
        row.errors = res.load.errors + res.missing
        row.runs, row.requests = 1, res.load.requests
        row.rss_mb = rss_mb(box.procs["ingress"].pid)[0]
        row.note = (
            f"response received -> spend row visible; {res.missing} rows never seen; "
            f"{res.load.errors} calls failed or not sent (in flight at the cap); "
            f"{len(res.polls_ms):,} polls (one query per id set, every "
            f"{lag.POLL_INTERVAL_S * 1000:.0f} ms), query p99 {res.poll_pct(99) or 0:.1f} ms"
        )
        self.results.add(row)
        self.say(
            f"lag: p50 {row.p50_ms or 0:.1f} ms, p95 {row.p95_ms or 0:.1f} ms, "
            f"p99 {row.p99_ms or 0:.1f} ms, {res.missing} never seen, "
            f"load errors {res.load.errors}"
        )

    async def ledger_phase(self) -> None:
        bench = f"ledger {self.plan.ledger_events:,} events"
        if self.ledger is None or self.nc is None:
            for leg in ("ledger", "copy"):
                self.results.add(
                    Row(f"ledger.ingest.{leg}", bench, leg, status=self.ledger_skip or "not run")
                )
            return
        assert self.urls is not None
        js = self.nc.jetstream(timeout=30)
        await ledger_ingest.wait_drained(js, 300)
        stop_process(self.ledger)
        team = f"bench-{uuid.uuid4().hex[:12]}"
        n = self.plan.ledger_events
        events = ledger_ingest.synthetic_events(team, n)
        publish_s = await ledger_ingest.publish_all(js, events)
        del events
        self.say(f"published {n:,} events in {publish_s:.1f} s; starting the ledger")

        async def launch() -> None:
            self.ledger = self.spawn_ledger(self.gateway_cpus, wait=False)

        res = await ledger_ingest.measure_ingest(
            js, self.urls.database_url, team, n, launch, publish_s, timeout=1800
        )
        assert self.ledger is not None
        wait_http(self.ledger, f"{self.ledger.url}/health", 30)
        row = self.results.add(Row("ledger.ingest.ledger", bench, "ledger", unit="events/s"))
        row.throughput, row.runs, row.requests, row.errors = res.rate, 1, n, 0
        row.note = (
            f"all {n:,} persisted {res.with_start_s:.1f} s after launching the ledger; "
            f"rate from its first committed batch; published at {n / publish_s:,.0f}/s"
        )
        self.say(f"ledger: {res.rate:,.0f} events/s ({res.with_start_s:.1f} s with start)")

        def around(copying: bool) -> None:
            if self.gateway_cpus:
                pin(0, self.gateway_cpus if copying else self.support_cpus)

        floor = await ledger_ingest.copy_floor(
            self.urls.database_url, team, self.plan.copy_repeats, around
        )
        row = self.results.add(Row("ledger.ingest.copy", bench, "copy", unit="rows/s"))
        row.throughput, row.runs, row.requests, row.errors = floor.rate, len(floor.seconds), n, 0
        row.note = (
            f"asyncpg COPY of the same {floor.rows:,} spend_logs rows into a fresh copy of the "
            f"ledger schema; median of {len(floor.seconds)}"
        )
        self.say(f"COPY floor: {floor.rate:,.0f} rows/s")

    async def phase(self, name: str, keys: list[str], coro: Any) -> None:
        """Run one part; if it fails, its rows say so and the other parts still run."""
        t = time.perf_counter()
        self.say(f"{name} ...")
        try:
            await coro
        except Exception as exc:
            self.say(f"{name} failed: {type(exc).__name__}: {exc}")
            for key in keys:
                if key not in self.results.rows:
                    parts = key.split(".")
                    self.results.add(
                        Row(key, f"{parts[0]} {parts[1]}", parts[2],
                            status=f"not run: {type(exc).__name__}: {_first_line(exc)}"[:160])
                    )  # fmt: skip
        self.say(f"{name} took {time.perf_counter() - t:.1f} s")

    async def run(self) -> Results:
        keys = self.results_keys()
        try:
            t = time.perf_counter()
            await self.setup()
            self.say(f"setup took {time.perf_counter() - t:.1f} s")
            await self.phase("gateway, closed loop", keys["gateway.c"], self.gateway_closed())
            await self.phase("gateway, fixed rate", keys["gateway.rate"], self.gateway_rate())
            await self.phase("streaming TTFT", keys["stream"], self.streaming())
            await self.phase("ledger ingest", keys["ledger"], self.ledger_phase())
            await self.phase("whole box and lag", keys["box"], self.whole_box())
        finally:
            t = time.perf_counter()
            await self.teardown()
            self.say(f"teardown took {time.perf_counter() - t:.1f} s")
        self.results.mark_missing("not run: setup failed")
        return self.results

    def results_keys(self) -> dict[str, list[str]]:
        from tollgate_bench.report import expected_keys

        groups: dict[str, list[str]] = {
            "gateway.c": [], "gateway.rate": [], "stream": [], "box": [], "ledger": [],
        }  # fmt: skip
        for key in expected_keys(self.plan):
            for prefix, bucket in groups.items():
                if key.startswith(prefix):
                    bucket.append(key)
        return groups


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


async def profiling_run(leg: Leg, seconds: int, out: Path, concurrency: int) -> str:
    """Sample the gateway with py-spy while it is under load; returns the top frames."""
    from tollgate_bench.profiling import record, top_frames

    assert leg.proc is not None
    raw = out / f"profile-{leg.name}-c{concurrency}.txt"
    ok = await record(leg.proc.pid, seconds, raw)
    if not ok:
        return f"py-spy could not sample {leg.name} (is it installed, may it ptrace?)"
    return str(top_frames(raw, 15))
