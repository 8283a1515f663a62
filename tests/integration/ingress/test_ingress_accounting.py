"""Every call is costed once, whatever happens to it: abandoned streams, parallel calls
against a budget, calls cancelled by a shutdown, and an ingress started while NATS is down.

Ingress runs as a real process against real NATS and Redis, a real OpenAI-compatible
upstream, and a second upstream that streams one word every 0.2 s.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import redis.asyncio as aioredis
import yaml
from litestar import Litestar, Request, post
from litestar.response import Stream
from nats.js import JetStreamContext

from support.configs import MASTER_KEY, write_config
from support.events import wait_for_events
from support.fake_upstream import FakeUpstream, count_words, fake_upstream, serve_in_thread
from support.processes import Service, start_service, stop_service
from tollgate_devstack.embedded import StackUrls, free_port, nats_server_binary, wait_for_port
from tollgate_shared import names
from tollgate_shared.provision import provision_url
from tollgate_shared.state import KeyState, hash_key

FAILED = "llm.request.failed.v1.>"
COMPLETED = "llm.request.completed.v1.>"
MASTER = {"authorization": f"Bearer {MASTER_KEY}"}
SLOW_WORDS = 40
IN_PRICE, OUT_PRICE = Decimal("0.000003"), Decimal("0.000007")


def slow_stream_app() -> Litestar:
    """Streams SLOW_WORDS words, one every 0.2 s; usage only in the last chunk (as OpenAI)."""

    @post("/v1/chat/completions", status_code=200)
    async def chat(request: Request[Any, Any, Any]) -> Stream:
        body = await request.json()

        async def sse() -> AsyncIterator[bytes]:
            def chunk(d: dict[str, Any]) -> bytes:
                return f"data: {json.dumps(d)}\n\n".encode()

            base = {"id": "chatcmpl-slow", "object": "chat.completion.chunk", "model": "slow"}
            for i in range(SLOW_WORDS):
                delta = {"content": f" word{i}"}
                yield chunk({**base, "choices": [{"index": 0, "delta": delta}]})
                await asyncio.sleep(0.2)
            prompt = count_words(body.get("messages"))
            usage = {"prompt_tokens": prompt, "completion_tokens": SLOW_WORDS}
            yield chunk({**base, "choices": [], "usage": usage})
            yield b"data: [DONE]\n\n"

        return Stream(sse(), media_type="text/event-stream")

    return Litestar([chat], debug=False)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with fake_upstream() as up:
        yield up


@pytest.fixture(scope="module")
def slow_base() -> Iterator[str]:
    with serve_in_thread(slow_stream_app()) as port:
        yield f"http://127.0.0.1:{port}/v1"


def config(path: Path, upstream: FakeUpstream, slow_base: str) -> Path:
    write_config(path, upstream.base_url, router_settings={"num_retries": 0})
    cfg = yaml.safe_load(path.read_text())
    cfg["model_list"].append(
        {
            "model_name": "slow",
            "litellm_params": {
                "model": "openai/slow",
                "api_base": slow_base,
                "input_cost_per_token": str(IN_PRICE),
                "output_cost_per_token": str(OUT_PRICE),
            },
            "model_info": {"id": "slow-1"},
        }
    )
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def ingress(
    provisioned: StackUrls,
    upstream: FakeUpstream,
    slow_base: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("ingress-accounting")
    svc = start_service(
        "tollgate_ingress",
        free_port(),
        {
            **provisioned.env(),
            "TOLLGATE_CONFIG": str(config(tmp / "config.yaml", upstream, slow_base)),
            "TOLLGATE_SPOOL_PATH": str(tmp / "spool.sqlite3"),
        },
        tmp,
    )
    yield svc
    stop_service(svc)


async def _key(js: JetStreamContext, http: httpx.AsyncClient, name: str, **kw: Any) -> str:
    """A virtual key in the KV bucket, once ingress has loaded it."""
    keys = await js.key_value(names.KV_KEYS)
    plaintext = f"sk-accounting-{name}-{time.time_ns()}"
    digest = hash_key(plaintext)
    await keys.put(digest, KeyState(token=digest, key_alias=name, **kw).to_json())
    for _ in range(100):
        r = await http.get("/v1/models", headers={"authorization": f"Bearer {plaintext}"})
        if r.status_code == 200:
            return plaintext
        await asyncio.sleep(0.05)
    raise AssertionError("the key never reached ingress")


async def test_an_abandoned_stream_is_costed_from_its_streamed_text_and_counts_tpm(
    ingress: Service, js: JetStreamContext, provisioned: StackUrls
) -> None:
    async with httpx.AsyncClient(base_url=ingress.url, timeout=20) as http:
        key = await _key(js, http, "abandon", tpm_limit=1_000_000)
        body = {
            "model": "slow",
            "messages": [{"role": "user", "content": "count slowly for me please"}],
            "stream": True,
        }
        headers = {"authorization": f"Bearer {key}"}
        async with http.stream("POST", "/v1/chat/completions", headers=headers, json=body) as s:
            assert s.status_code == 200
            call_id = s.headers[names.HDR_CALL_ID]
            words = 0
            async for line in s.aiter_lines():
                words += line.count('"content"')
                if words >= 3:
                    break  # and walk away mid-stream: the connection is closed
    [(_, ev)] = await wait_for_events(js, FAILED, {"request_id": call_id}, timeout=15)
    assert ev["status_code"] == 499
    assert ev["usage_estimated"] is True
    assert ev["prompt_tokens"] > 0
    assert ev["completion_tokens"] >= 3  # at least the words the client saw
    assert ev["total_tokens"] == ev["prompt_tokens"] + ev["completion_tokens"]
    expected = ev["prompt_tokens"] * IN_PRICE + ev["completion_tokens"] * OUT_PRICE
    assert Decimal(ev["spend"]) == expected > 0
    # The estimated tokens count in the key's tokens-per-minute window.
    client = aioredis.from_url(provisioned.redis_url)
    try:
        # Tokens count in the fixed minute the call ended in (which may already be over).
        ended = datetime.fromisoformat(ev["end_time"]).timestamp()
        windows = sorted({int(ended // 60), int(time.time() // 60)})
        tpm = 0
        for _ in range(200):
            tpm = 0
            for window in windows:
                tpm_key = f"tollgate:ratelimit:key:{hash_key(key)}:{window}:tpm"
                tpm += int(await client.get(tpm_key) or 0)
            if tpm:
                break
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()
    assert tpm == ev["total_tokens"]


async def test_fifty_parallel_calls_against_a_budget_that_fits_one(
    ingress: Service, js: JetStreamContext, upstream: FakeUpstream
) -> None:
    # "three little words", 5 completion tokens: 3 x 0.000003 + 5 x 0.000007.
    one_call = Decimal("0.000044")
    async with httpx.AsyncClient(
        base_url=ingress.url, timeout=30, limits=httpx.Limits(max_connections=60)
    ) as http:
        key = await _key(js, http, "budget", max_budget=one_call)
        body = {
            "model": "fake",
            "messages": [{"role": "user", "content": "three little words"}],
            "max_tokens": 5,
        }
        upstream.latency_s = 0.5  # all fifty are in flight at once
        try:
            answers = await asyncio.gather(
                *(
                    http.post(
                        "/v1/chat/completions",
                        headers={"authorization": f"Bearer {key}"},
                        json=body,
                    )
                    for _ in range(50)
                )
            )
        finally:
            upstream.latency_s = 0.0
    served = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code != 200]
    spent = sum(Decimal(a.headers[names.HDR_RESPONSE_COST]) for a in served)
    # The README's bound: one call's cost beyond the budget, when reservations cover costs.
    assert spent <= one_call + one_call
    assert len(served) == 1
    assert {a.json()["error"]["type"] for a in refused} == {"budget_exceeded"}
    # Each refusal names itself, as any answer does (the id of its failure row).
    ids = {a.headers.get(names.HDR_CALL_ID) for a in refused}
    assert None not in ids
    assert len(ids) == len(refused)


async def test_a_call_cancelled_by_shutdown_is_a_costed_failure(
    provisioned: StackUrls, slow_base: str, js: JetStreamContext, tmp_path: Path
) -> None:
    with fake_upstream(hang=True) as hanging:
        svc = start_service(
            "tollgate_ingress",
            free_port(),
            {
                **provisioned.env(),
                "TOLLGATE_CONFIG": str(config(tmp_path / "config.yaml", hanging, slow_base)),
                "TOLLGATE_SPOOL_PATH": str(tmp_path / "spool.sqlite3"),
                "TOLLGATE_SHUTDOWN_GRACE_S": "1",
            },
            tmp_path,
        )
        tag = f"cancelled-{time.time_ns()}"
        try:
            async with httpx.AsyncClient(base_url=svc.url, timeout=30) as http:
                call = asyncio.create_task(
                    http.post(
                        "/v1/chat/completions",
                        headers=MASTER,
                        json={
                            "model": "fake",
                            "messages": [{"role": "user", "content": "never answered"}],
                            "metadata": {"tags": [tag]},
                        },
                    )
                )
                for _ in range(100):
                    if hanging.requests:
                        break
                    await asyncio.sleep(0.05)
                assert hanging.requests, "the call never reached the upstream"
                svc.proc.send_signal(signal.SIGTERM)  # cancelled after the 1 s grace
                await asyncio.to_thread(svc.proc.wait, 30)
                call.cancel()
        finally:
            stop_service(svc)
    [(_, ev)] = await wait_for_events(js, FAILED, {"tags": [tag]}, timeout=10)
    assert ev["error_class"] == "Cancelled"
    assert ev["usage_estimated"] is True
    assert ev["prompt_tokens"] > 0
    assert Decimal(ev["spend"]) == ev["prompt_tokens"] * IN_PRICE


def _nats(port: int, store: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, proc, "nats-server")
    return proc


async def test_ingress_started_while_nats_is_down_serves_spools_and_delivers_later(
    provisioned: StackUrls, tmp_path: Path
) -> None:
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    cfg = write_config(tmp_path / "config.yaml")
    env = {
        **provisioned.env(),
        "TOLLGATE_NATS_URL": url,  # nothing listens there yet
        "TOLLGATE_NATS_START_TIMEOUT_S": "1",
        "TOLLGATE_CONFIG": str(cfg),
        "TOLLGATE_SPOOL_PATH": str(tmp_path / "spool.sqlite3"),
    }
    svc = _start_unhealthy("tollgate_ingress", free_port(), env, tmp_path)
    server: subprocess.Popen[bytes] | None = None
    try:
        async with httpx.AsyncClient(base_url=svc.url, timeout=10) as http:
            health = await http.get("/health")
            assert health.status_code != 200  # degraded, and says so
            assert health.json()["dependencies"]["nats"]["status"] == "unhealthy"
            r = await http.post(
                "/v1/chat/completions",
                headers=MASTER,
                json={
                    "model": "demo",
                    "messages": [{"role": "user", "content": "while NATS is down"}],
                    "metadata": {"tags": ["degraded-start"]},
                },
            )
            assert r.status_code == 200, r.text
            call_id = r.headers[names.HDR_CALL_ID]
            server = _nats(port, tmp_path / "js")
            await provision_url(url)
            for _ in range(150):
                if (await http.get("/health")).status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert (await http.get("/health")).status_code == 200
        nc = await nats.connect(url)
        try:
            got = await wait_for_events(nc.jetstream(), COMPLETED, {"request_id": call_id})
        finally:
            await nc.close()
        assert len(got) == 1
    finally:
        stop_service(svc)
        if server is not None:
            server.terminate()
            server.wait(10)


def _start_unhealthy(module: str, port: int, env: dict[str, str], tmp: Path) -> Service:
    """Start a service and wait until its port answers /health, whatever the status."""
    log_path = tmp / f"{module}-{port}.log"
    full_env = {**os.environ, **env, "TOLLGATE_PORT": str(port), "TOLLGATE_HOST": "127.0.0.1"}
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", module], env=full_env, stdout=log_file, stderr=subprocess.STDOUT
        )
    svc = Service(module, port, proc, log_path)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{module} exited ({proc.returncode}):\n{svc.logs()[-4000:]}")
        try:
            httpx.get(f"{svc.url}/health", timeout=1)
        except httpx.HTTPError:
            time.sleep(0.1)
            continue
        return svc
    stop_service(svc)
    raise RuntimeError(f"{module} never bound its port:\n{svc.logs()[-4000:]}")
