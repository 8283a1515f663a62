"""Load generators: wrk (closed loop), a Python closed loop when wrk is absent, an open-loop
fixed-rate generator, and a time-to-first-token probe for streamed completions."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
import orjson


@dataclass(frozen=True)
class LoadResult:
    """One measured run. Latencies in milliseconds; errors = non-2xx + socket errors."""

    tool: str
    requests: int
    seconds: float
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    # CPU time the server process used per answered request (where it was measured).
    cpu_ms_per_request: float | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks; `q` in [0, 100]."""
    if not sorted_values:
        return None
    pos = (len(sorted_values) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(tool: str, latencies_s: list[float], errors: int, seconds: float) -> LoadResult:
    ms = sorted(v * 1000 for v in latencies_s)
    return LoadResult(
        tool,
        len(ms),
        seconds,
        errors,
        percentile(ms, 50),
        percentile(ms, 95),
        percentile(ms, 99),
    )


def wrk_binary() -> str | None:
    return shutil.which("wrk")


# -- wrk ------------------------------------------------------------------------------

_WRK_LUA = """-- Written by tollgate_bench: POST the fixed request, report as one parseable line.
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
{auth}
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH_RESULT %d %d %d %d %d %d %d %.1f %.1f %.1f\\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


def write_wrk_script(path: Path, body: bytes, api_key: str | None) -> Path:
    auth = f'wrk.headers["Authorization"] = "Bearer {api_key}"' if api_key else ""
    path.write_text(_WRK_LUA.format(body=body.decode(), auth=auth))
    return path


async def run_wrk(
    wrk: str, script: Path, url: str, concurrency: int, duration_s: int
) -> LoadResult:
    """One closed-loop wrk run: `concurrency` connections on one thread."""
    proc = await asyncio.create_subprocess_exec(
        wrk,
        "-t1",
        f"-c{concurrency}",
        f"-d{duration_s}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    for line in text.splitlines():
        if line.startswith("BENCH_RESULT "):
            f = line.split()[1:]
            requests, duration_us = int(f[0]), int(f[1])
            errors = sum(int(x) for x in f[2:7])
            p50, p95, p99 = (float(x) / 1000 for x in f[7:10])
            # wrk's `requests` counts every completed response, errors included.
            return LoadResult("wrk", requests, duration_us / 1e6, errors, p50, p95, p99)
    raise RuntimeError(f"wrk gave no result (exit {proc.returncode}):\n{text[-2000:]}")


# -- Python generators ----------------------------------------------------------------------


def _client(connections: int, timeout: float = 10.0) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(limits=limits, timeout=timeout)


async def closed_loop(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    concurrency: int,
    duration_s: float,
) -> LoadResult:
    """wrk's model in Python: `concurrency` workers, each sending the next request on reply."""
    latencies: list[float] = []
    errors = 0
    hdrs = {"content-type": "application/json", **headers}
    async with _client(concurrency) as client:
        start = time.perf_counter()
        deadline = start + duration_s

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                try:
                    r = await client.post(url, content=body, headers=hdrs)
                    ok = 200 <= r.status_code < 300
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - t)
                if not ok:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - start
    return summarize("python", latencies, errors, seconds)


# Sees the headers and wall-clock receive time of every 2xx answer of an open-loop run.
OnResponse = Callable[[Mapping[str, str], float], None]


async def open_loop(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    rate_rps: float,
    duration_s: float,
    on_response: OnResponse | None = None,
    max_in_flight: int = 512,
    drain_s: float = 10.0,
) -> LoadResult:
    """Send at a fixed rate whatever the answers do (open loop).

    Latency counts from when a request was due, not when it went out, so a
    server that falls behind shows it (no coordinated omission). A request due
    while `max_in_flight` are outstanding is counted as an error and not sent.
    A request still unanswered `drain_s` after the last one was due is
    cancelled and counted as an error, so an overloaded leg cannot stall the run.
    `on_response(headers, wall_clock_receive_time)` sees every 2xx answer.

    The client is aiohttp: at 1,000 req/s it costs about 0.3 ms of CPU per request,
    where httpx's pool of hundreds of connections fell behind the rate on two cores.
    """
    n = max(1, round(rate_rps * duration_s))
    latencies: list[float] = []
    errors = 0
    in_flight = 0
    hdrs = {"content-type": "application/json", **headers}
    connector = aiohttp.TCPConnector(limit=max_in_flight)
    timeout = aiohttp.ClientTimeout(total=max(10.0, drain_s))
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def send(due: float) -> None:
            nonlocal errors, in_flight
            try:
                async with session.post(url, data=body, headers=hdrs) as r:
                    await r.read()
                    received = time.time()
                    latencies.append(time.perf_counter() - due)
                    if 200 <= r.status < 300:
                        if on_response is not None:
                            on_response(r.headers, received)
                    else:
                        errors += 1
            except (aiohttp.ClientError, TimeoutError):
                errors += 1
            finally:
                in_flight -= 1

        # Only the unanswered ones are held: a 5-minute run sends 300,000.
        pending: set[asyncio.Task[None]] = set()
        start = time.perf_counter() + 0.01
        for i in range(n):
            due = start + i / rate_rps
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if in_flight >= max_in_flight:
                errors += 1
                continue
            in_flight += 1
            task = asyncio.create_task(send(due))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            _done, late = await asyncio.wait(set(pending), timeout=drain_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            errors += len(late)
        seconds = time.perf_counter() - start
    return summarize("python-open-loop", latencies, errors, seconds)


async def time_to_first_token(
    url: str, body: bytes, headers: Mapping[str, str], requests: int
) -> LoadResult:
    """Sequential streamed completions: time from sending to the first content delta."""
    ttfts: list[float] = []
    errors = 0
    hdrs = {"content-type": "application/json", **headers}
    async with _client(1, timeout=30) as client:
        start = time.perf_counter()
        for _ in range(requests):
            t = time.perf_counter()
            first: float | None = None
            try:
                async with client.stream("POST", url, content=body, headers=hdrs) as r:
                    if r.status_code != 200:
                        await r.aread()
                        errors += 1
                        continue
                    # Read to the end, so the gateway sees a finished stream.
                    async for line in r.aiter_lines():
                        if first is None and _has_content(line):
                            first = time.perf_counter()
            except httpx.HTTPError:
                errors += 1
                continue
            if first is None:
                errors += 1
            else:
                ttfts.append(first - t)
        seconds = time.perf_counter() - start
    return summarize("python-stream", ttfts, errors, seconds)


def _has_content(line: str) -> bool:
    if not line.startswith("data:"):
        return False
    data = line[5:].strip()
    if not data or data == "[DONE]":
        return False
    with contextlib.suppress(orjson.JSONDecodeError, AttributeError, IndexError, TypeError):
        choices = orjson.loads(data).get("choices") or []
        return bool(choices and (choices[0].get("delta") or {}).get("content"))
    return False
