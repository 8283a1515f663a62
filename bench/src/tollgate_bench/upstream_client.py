"""Client CPU per upstream call: httpx over aiohttp (the transport ingress used for every call)
against aiohttp's own session (what `tollgate_ingress.upstream.http.post` sends plain calls
with), sequential POSTs of a chat body to the bench's nginx upstream, timed with the process's
CPU clock. `python -m tollgate_bench.upstream_client [--calls N] [--rounds R]`."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
import orjson
import uvloop
from httpx_aiohttp import AiohttpTransport

from tollgate_bench.processes import stop_process
from tollgate_bench.report import interleaved, medians_against_first
from tollgate_bench.upstream import start_upstream

BODY = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hello there"}]})
HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
WARMUP = 200


async def through_httpx(url: str, calls: int) -> float:
    async with httpx.AsyncClient(transport=AiohttpTransport(trust_env=False), timeout=30) as c:
        for _ in range(WARMUP):
            await c.post(url, content=BODY, headers=HEADERS)
        t = time.process_time()
        for _ in range(calls):
            resp = await c.post(url, content=BODY, headers=HEADERS, timeout=30)
            resp.headers.get("x-ratelimit-remaining-requests")
            orjson.loads(resp.content)
        return time.process_time() - t


async def through_aiohttp(url: str, calls: int) -> float:
    limit = aiohttp.ClientTimeout(sock_connect=30, sock_read=30, connect=30)
    async with aiohttp.ClientSession(trust_env=False) as s:
        for _ in range(WARMUP):
            async with s.post(url, data=BODY, headers=HEADERS) as resp:
                await resp.read()
        t = time.process_time()
        for _ in range(calls):
            async with s.post(
                url, data=BODY, headers=HEADERS, timeout=limit, allow_redirects=False
            ) as resp:
                raw = await resp.read()
                resp.headers.get("x-ratelimit-remaining-requests")
                orjson.loads(raw)
        return time.process_time() - t


async def main(calls: int, rounds: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="tollgate-client-bench-"))
    upstream = start_upstream(work, True, None)
    url = upstream.chat_url
    try:
        seen = await interleaved(
            {
                "httpx over aiohttp": lambda: through_httpx(url, calls),
                "aiohttp session": lambda: through_aiohttp(url, calls),
            },
            rounds,
        )
    finally:
        stop_process(upstream.proc)
    per_call = {name: [v / calls * 1e6 for v in values] for name, values in seen.items()}
    print(f"upstream: {upstream.kind}, {calls} calls x {rounds} rounds, client CPU per call")
    print("\n".join(medians_against_first(per_call, "us", 0)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m tollgate_bench.upstream_client")
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    uvloop.run(main(args.calls, args.rounds))
