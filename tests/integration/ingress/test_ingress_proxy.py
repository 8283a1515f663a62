"""Ingress as a real process, against real NATS and a real OpenAI-compatible upstream."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest
import redis.asyncio as aioredis
from nats.js import JetStreamContext

from support.configs import MASTER_KEY, write_config
from support.events import wait_for_events
from support.fake_upstream import FakeUpstream, fake_upstream
from support.processes import Service, start_service, stop_service
from tollgate_devstack.embedded import StackUrls, free_port
from tollgate_shared import names
from tollgate_shared.sealing import Sealer
from tollgate_shared.state import KeyState, ModelState, TeamState, hash_key

COMPLETED = "llm.request.completed.v1.>"
FAILED = "llm.request.failed.v1.>"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with fake_upstream() as up:
        yield up


@pytest.fixture(scope="module")
def ingress(
    provisioned: StackUrls, upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("ingress")
    cfg = write_config(
        tmp / "config.yaml",
        upstream.base_url,
        router_settings={"num_retries": 0, "allowed_fails": 100},
    )
    svc = start_service(
        "tollgate_ingress",
        free_port(),
        {
            **provisioned.env(),
            "TOLLGATE_CONFIG": str(cfg),
            "TOLLGATE_SPOOL_PATH": str(tmp / "spool.sqlite3"),
            "TOLLGATE_STARTED_EVENT_AFTER_MS": "300",
        },
        tmp,
    )
    yield svc
    stop_service(svc)


@pytest.fixture
def client(ingress: Service) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{ingress.url}/v1", api_key=MASTER_KEY, max_retries=0)


@pytest.fixture(autouse=True)
def healthy_upstream(upstream: FakeUpstream) -> None:
    upstream.fail_status = None
    upstream.latency_s = 0.0
    upstream.hang = False


async def test_plain_call_headers_and_event(
    client: openai.AsyncOpenAI, js: JetStreamContext, upstream: FakeUpstream
) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model="fake",
        messages=[{"role": "user", "content": "three little words"}],
        extra_body={
            "metadata": {"session_id": "sess-plain", "tags": ["t1"], "generation_name": "gen"}
        },
    )
    resp = raw.parse()
    assert resp.choices[0].message.content == upstream.reply
    call_id = raw.headers[names.HDR_CALL_ID]
    # 3 prompt words x 0.000003 + 5 completion words x 0.000007
    assert Decimal(raw.headers[names.HDR_RESPONSE_COST]) == Decimal("0.000044")
    assert "metadata" not in upstream.requests[-1]
    assert upstream.requests[-1]["model"] == "fake-model"
    assert upstream.headers[-1]["authorization"] == "Bearer sk-upstream"
    [(subject, ev)] = await wait_for_events(js, COMPLETED, {"request_id": call_id})
    assert subject == "llm.request.completed.v1._"
    assert (ev["prompt_tokens"], ev["completion_tokens"], ev["spend"]) == (3, 5, "0.000044")
    assert ev["session_id"] == "sess-plain"
    assert ev["tags"] == ["t1"]
    assert ev["metadata"]["generation_name"] == "gen"
    assert ev["model_id"] == "fake-1"
    assert ev["messages"] == [{"role": "user", "content": "three little words"}]
    # Over in well under 300 ms: no started event, only the completed one.
    started = await wait_for_events(
        js, "llm.request.started.v1.>", {"request_id": call_id}, timeout=1.0
    )
    assert started == []


async def test_a_call_still_running_announces_itself_with_its_real_start(
    client: openai.AsyncOpenAI, js: JetStreamContext, upstream: FakeUpstream
) -> None:
    upstream.latency_s = 0.8  # past TOLLGATE_STARTED_EVENT_AFTER_MS=300
    raw = await client.chat.completions.with_raw_response.create(
        model="fake", messages=[{"role": "user", "content": "slow"}]
    )
    call_id = raw.headers[names.HDR_CALL_ID]
    [(_, done)] = await wait_for_events(js, COMPLETED, {"request_id": call_id})
    [(subject, started)] = await wait_for_events(
        js, "llm.request.started.v1.>", {"request_id": call_id}
    )
    assert subject == "llm.request.started.v1._"
    # The alerter times a hanging call from this start time, not from when it heard of it.
    assert started["start_time"] == done["start_time"]
    assert started["model_group"] == "fake"


async def test_stream_relays_and_strips_unasked_usage(
    client: openai.AsyncOpenAI, js: JetStreamContext, upstream: FakeUpstream
) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model="fake",
        messages=[{"role": "user", "content": "three little words"}],
        stream=True,
        extra_headers={"x-litellm-session-id": "sess-stream"},
    )
    call_id = raw.headers[names.HDR_CALL_ID]
    chunks = [c async for c in raw.parse()]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == upstream.reply
    assert all(c.usage is None for c in chunks)
    assert upstream.requests[-1]["stream_options"] == {"include_usage": True}
    [(_, ev)] = await wait_for_events(js, COMPLETED, {"request_id": call_id})
    # Costed exactly like the same call unstreamed.
    assert (ev["prompt_tokens"], ev["completion_tokens"], ev["spend"]) == (3, 5, "0.000044")
    assert ev["stream"] is True
    assert ev["session_id"] == "sess-stream"
    assert ev["completion_start_time"] is not None
    assert ev["response"]["choices"][0]["message"]["content"] == upstream.reply


async def test_stream_keeps_usage_when_asked(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="fake",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    usages = [c.usage for c in [c async for c in stream] if c.usage]
    assert len(usages) == 1
    assert usages[0].prompt_tokens == 1


async def test_upstream_error_keeps_status_and_is_a_failed_event(
    client: openai.AsyncOpenAI, js: JetStreamContext, upstream: FakeUpstream
) -> None:
    upstream.fail_status = 503
    with pytest.raises(openai.APIStatusError) as info:
        await client.chat.completions.create(
            model="fake", messages=[{"role": "user", "content": "x"}], user="end-503"
        )
    assert info.value.status_code == 503
    body = info.value.response.json()
    assert body["error"]["message"] == "injected failure"
    call_id = info.value.response.headers[names.HDR_CALL_ID]
    [(_, ev)] = await wait_for_events(js, FAILED, {"request_id": call_id})
    assert (ev["status_code"], ev["upstream_status_code"], ev["status"]) == (503, 503, "failure")
    assert ev["end_user"] == "end-503"


async def test_unreachable_upstream_is_502(
    provisioned: StackUrls, tmp_path: Path, js: JetStreamContext
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    cfg = write_config(tmp_path / "c.yaml", dead)
    svc = start_service(
        "tollgate_ingress",
        free_port(),
        {
            **provisioned.env(),
            "TOLLGATE_CONFIG": str(cfg),
            "TOLLGATE_SPOOL_PATH": str(tmp_path / "spool.sqlite3"),
        },
        tmp_path,
    )
    try:
        async with httpx.AsyncClient() as http:
            r = await http.post(
                f"{svc.url}/chat/completions",
                headers={"authorization": f"Bearer {MASTER_KEY}"},
                json={"model": "fake", "messages": [{"role": "user", "content": "x"}]},
            )
        assert r.status_code == 502
        assert "unreachable" in r.json()["error"]["message"]
        [(_, ev)] = await wait_for_events(js, FAILED, {"request_id": r.headers[names.HDR_CALL_ID]})
        assert ev["upstream_reachable"] is False
    finally:
        stop_service(svc)


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ("not json", None),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "fake", "messages": "hello"}, "messages"),
        ({"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}, "model"),
        (
            {"model": "fake", "messages": [{"role": "user", "content": "x"}], "stream": "1"},
            "stream",
        ),
    ],
)
async def test_bad_input_is_an_openai_400(
    ingress: Service, payload: object, param: str | None
) -> None:
    content = payload if isinstance(payload, str) else json.dumps(payload)
    async with httpx.AsyncClient() as http:
        r = await http.post(
            f"{ingress.url}/v1/chat/completions",
            content=content,
            headers={"authorization": f"Bearer {MASTER_KEY}"},
        )
    assert r.status_code == 400
    assert r.json()["error"]["param"] == param
    assert r.json()["error"]["type"] == "invalid_request_error"


async def test_virtual_keys_and_models_follow_kv_within_a_second(
    ingress: Service, js: JetStreamContext
) -> None:
    keys = await js.key_value(names.KV_KEYS)
    teams = await js.key_value(names.KV_TEAMS)
    models = await js.key_value(names.KV_MODELS)
    plaintext = "sk-integration-virtual-key-1"
    digest = hash_key(plaintext)
    await teams.put("team-virt", TeamState(team_id="team-virt", team_alias="Virt").to_json())
    await keys.put(
        digest,
        KeyState(
            token=digest, key_alias="virt", team_id="team-virt", models=["demo", "added"]
        ).to_json(),
    )
    client = openai.AsyncOpenAI(base_url=f"{ingress.url}/v1", api_key=plaintext, max_retries=0)

    async def status(model: str = "demo") -> int:
        try:
            await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "x"}]
            )
        except openai.APIStatusError as exc:
            return exc.status_code
        return 200

    async def eventually(expected: int, model: str = "demo") -> None:
        for _ in range(20):
            if await status(model) == expected:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"status never became {expected}")

    await eventually(200)
    [(_subject, ev)] = await wait_for_events(
        js, "llm.request.completed.v1.team-virt", {"key_alias": "virt"}
    )
    assert (ev["api_key_hash"], ev["team_id"], ev["team_alias"]) == (digest, "team-virt", "Virt")
    assert await status("fake") == 403  # not in the key's models
    await models.put(
        "added-1",
        ModelState(
            model_id="added-1",
            model_name="added",
            litellm_params={"model": "openai/a", "mock_response": "hi"},
        ).to_json(),
    )
    await eventually(200, "added")
    await keys.put(digest, KeyState(token=digest, blocked=True).to_json())
    await eventually(403)
    await keys.delete(digest)
    await eventually(401)


async def _until(read: Callable[[], Awaitable[int]], expected: int, timeout: float = 10) -> None:
    """Wait until `read()` gives `expected` (a state change became visible), or fail."""
    deadline = time.monotonic() + timeout
    while (value := await read()) != expected:
        assert time.monotonic() < deadline, f"still {value}, expected {expected}"
        await asyncio.sleep(0.02)


async def _teams_known(ingress: Service) -> int:
    async with httpx.AsyncClient(base_url=ingress.url) as http:
        return int((await http.get("/health")).json()["dependencies"]["state"]["teams"])


async def _slots_in_use(provisioned: StackUrls, digest: str) -> int:
    r = aioredis.from_url(provisioned.redis_url)
    try:
        return int(await r.zcard(f"tollgate:ratelimit:key:{digest}:parallel"))
    finally:
        await r.aclose()


async def test_rpm_limit_is_enforced_across_requests(
    ingress: Service, js: JetStreamContext
) -> None:
    keys = await js.key_value(names.KV_KEYS)
    plaintext = "sk-integration-rpm-limited"
    digest = hash_key(plaintext)
    await keys.put(digest, KeyState(token=digest, key_alias="rpm", rpm_limit=2).to_json())
    statuses = []
    async with httpx.AsyncClient(base_url=ingress.url) as http:
        for _ in range(40):  # wait for the key to arrive, then spend the limit
            r = await http.post(
                "/v1/chat/completions",
                headers={"authorization": f"Bearer {plaintext}"},
                json={"model": "demo", "messages": [{"role": "user", "content": "x"}]},
            )
            if r.status_code != 401:
                statuses.append(r.status_code)
            if len(statuses) == 3:
                break
            await asyncio.sleep(0.05)
    assert statuses[:2] == [200, 200]
    assert statuses[2] == 429
    assert "requests per minute" in r.json()["error"]["message"]
    await keys.delete(digest)


async def test_sealed_upstream_key_of_an_added_model_is_opened_for_the_upstream(
    client: openai.AsyncOpenAI, js: JetStreamContext, upstream: FakeUpstream
) -> None:
    models = await js.key_value(names.KV_MODELS)
    secret = "sk-provider-secret-for-sealed-model"
    await models.put(
        "sealed-1",
        ModelState(
            model_id="sealed-1",
            model_name="sealed",
            litellm_params={
                "model": "openai/sealed",
                "api_base": upstream.base_url,
                "api_key": Sealer(MASTER_KEY).seal(secret),
            },
        ).to_json(),
    )
    for _ in range(40):
        try:
            await client.chat.completions.create(
                model="sealed", messages=[{"role": "user", "content": "x"}]
            )
            break
        except openai.BadRequestError:  # not routable yet
            await asyncio.sleep(0.05)
    assert upstream.headers[-1]["authorization"] == f"Bearer {secret}"
    await models.delete("sealed-1")


async def test_team_rpm_limit_counts_every_key_of_the_team(
    ingress: Service, js: JetStreamContext
) -> None:
    teams = await js.key_value(names.KV_TEAMS)
    keys = await js.key_value(names.KV_KEYS)
    team = "team-rpm-limited"
    known = await _teams_known(ingress)
    await teams.put(team, TeamState(team_id=team, rpm_limit=2).to_json())
    # The team reaches ingress's view before its keys do (its limit must count from the first).
    await _until(lambda: _teams_known(ingress), known + 1)
    plaintexts = ["sk-integration-team-rpm-a", "sk-integration-team-rpm-b"]
    for p in plaintexts:
        digest = hash_key(p)
        await keys.put(digest, KeyState(token=digest, team_id=team).to_json())
    body = {"model": "demo", "messages": [{"role": "user", "content": "x"}]}
    async with httpx.AsyncClient(base_url=ingress.url) as http:

        async def call(key: str) -> httpx.Response:
            return await http.post(
                "/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, json=body
            )

        for _ in range(40):  # wait for both keys and the team's limit to arrive
            info = await call(plaintexts[1])
            if info.status_code != 401:
                break
            await asyncio.sleep(0.05)
        # The minute may have turned while waiting: start from a fresh one if it is late.
        if time.time() % 60 > 55:
            await asyncio.sleep(60 - time.time() % 60 + 0.1)
            info = await call(plaintexts[1])
        assert info.status_code == 200, info.text
        second = await call(plaintexts[0])
        assert second.status_code == 200, second.text
        third = await call(plaintexts[0])
    assert third.status_code == 429
    assert f"team {team} allows 2 requests per minute" in third.json()["error"]["message"]
    for p in plaintexts:
        await keys.delete(hash_key(p))
    await teams.delete(team)


async def test_max_parallel_requests_refuses_the_extra_call_and_gives_slots_back(
    ingress: Service, js: JetStreamContext, upstream: FakeUpstream, provisioned: StackUrls
) -> None:
    keys = await js.key_value(names.KV_KEYS)
    plaintext = "sk-integration-parallel-limited"
    digest = hash_key(plaintext)
    await keys.put(
        digest, KeyState(token=digest, key_alias="par", max_parallel_requests=2).to_json()
    )
    headers = {"authorization": f"Bearer {plaintext}"}
    body = {"model": "fake", "messages": [{"role": "user", "content": "x"}]}
    async with httpx.AsyncClient(base_url=ingress.url, timeout=20) as http:
        for _ in range(40):  # wait for the key to arrive
            r = await http.post("/v1/chat/completions", headers=headers, json=body)
            if r.status_code != 401:
                break
            await asyncio.sleep(0.05)
        assert r.status_code == 200, r.text

        # Three at once against a slow upstream: two run, the third is refused.
        upstream.latency_s = 0.8
        answers = await asyncio.gather(
            *(http.post("/v1/chat/completions", headers=headers, json=body) for _ in range(3))
        )
        assert sorted(a.status_code for a in answers) == [200, 200, 429]
        [refused] = [a for a in answers if a.status_code == 429]
        assert refused.json()["error"]["type"] == "rate_limit_error"
        assert "parallel" in refused.json()["error"]["message"]
        upstream.latency_s = 0.0

        # Streams give their slot back when they end, and when the client walks away.
        stream_body = {**body, "stream": True}
        for _ in range(3):
            async with http.stream(
                "POST", "/v1/chat/completions", headers=headers, json=stream_body
            ) as s:
                assert s.status_code == 200
                await s.aread()
        for _ in range(2):
            async with http.stream(
                "POST", "/v1/chat/completions", headers=headers, json=stream_body
            ) as s:
                async for _chunk in s.aiter_bytes():
                    break
        # Every slot is given back (the abandoned streams' too) before asking for two again.
        await _until(lambda: _slots_in_use(provisioned, digest), 0)
        again = await asyncio.gather(
            *(http.post("/v1/chat/completions", headers=headers, json=body) for _ in range(2))
        )
        assert [a.status_code for a in again] == [200, 200]
    await keys.delete(digest)


async def test_chunked_request_bodies_get_the_same_answers(ingress: Service) -> None:
    """A body without Content-Length is answered by the Litestar route, not the fast path:
    the same status, headers and shapes, plain and streamed."""

    def chunked(body: dict[str, object]) -> AsyncIterator[bytes]:
        async def parts() -> AsyncIterator[bytes]:
            raw = json.dumps(body).encode()
            yield raw[:10]
            yield raw[10:]

        return parts()

    headers = {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"}
    body = {"model": "fake", "messages": [{"role": "user", "content": "two words"}]}
    async with httpx.AsyncClient(base_url=ingress.url, timeout=20) as http:
        plain = await http.post("/v1/chat/completions", headers=headers, content=chunked(body))
        assert plain.request.headers.get("transfer-encoding") == "chunked"
        assert plain.status_code == 200, plain.text
        assert plain.json()["object"] == "chat.completion"
        assert plain.headers[names.HDR_CALL_ID]
        assert plain.headers[names.HDR_RESPONSE_COST]

        async with http.stream(
            "POST",
            "/v1/chat/completions",
            headers=headers,
            content=chunked({**body, "stream": True}),
        ) as streamed:
            assert streamed.status_code == 200
            assert streamed.headers["content-type"].startswith("text/event-stream")
            text = (await streamed.aread()).decode()
        assert text.rstrip().endswith("data: [DONE]")

        refused = await http.post(
            "/v1/chat/completions",
            headers={"content-type": "application/json"},
            content=chunked(body),
        )
        assert refused.status_code == 401
        assert refused.json()["error"]["type"] == "auth_error"


async def test_embeddings_are_proxied_and_costed(
    client: openai.AsyncOpenAI, js: JetStreamContext
) -> None:
    raw = await client.embeddings.with_raw_response.create(
        model="fake", input=["four words right here", "two more"]
    )
    resp = raw.parse()
    assert [len(d.embedding) for d in resp.data] == [4, 4]
    call_id = raw.headers[names.HDR_CALL_ID]
    [(_, ev)] = await wait_for_events(js, COMPLETED, {"request_id": call_id})
    assert ev["call_type"] == "aembedding"
    assert (ev["prompt_tokens"], ev["spend"]) == (6, "0.000018")
    assert ev["response"]["data"] == [
        {"index": 0, "embedding_length": 4},
        {"index": 1, "embedding_length": 4},
    ]


async def test_a_restarted_ingress_knows_every_key_before_it_serves(
    provisioned: StackUrls, tmp_path: Path, js: JetStreamContext
) -> None:
    keys = await js.key_value(names.KV_KEYS)
    plaintext = "sk-integration-known-at-start"
    digest = hash_key(plaintext)
    await keys.put(digest, KeyState(token=digest, key_alias="at-start").to_json())
    cfg = write_config(tmp_path / "c.yaml")
    svc = start_service(
        "tollgate_ingress",
        free_port(),
        {
            **provisioned.env(),
            "TOLLGATE_CONFIG": str(cfg),
            "TOLLGATE_SPOOL_PATH": str(tmp_path / "spool.sqlite3"),
        },
        tmp_path,
    )
    try:
        async with httpx.AsyncClient(base_url=svc.url) as http:
            r = await http.post(
                "/v1/chat/completions",
                headers={"authorization": f"Bearer {plaintext}"},
                json={"model": "demo", "messages": [{"role": "user", "content": "x"}]},
            )
        assert r.status_code == 200, r.text
    finally:
        stop_service(svc)
        await keys.delete(digest)
