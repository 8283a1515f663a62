"""The first real path: openai client to ingress, JetStream, ledger, and back on port 4000."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from support.configs import MASTER_KEY, write_config
from support.fake_upstream import FakeUpstream, fake_upstream
from support.system import System, running_system
from tollgate_devstack.embedded import StackUrls
from tollgate_shared import names

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with fake_upstream() as up:
        yield up


@pytest.fixture(scope="module")
def system(
    provisioned: StackUrls, upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    tmp = tmp_path_factory.mktemp("spend-e2e")
    cfg = write_config(tmp / "config.yaml", upstream.base_url)
    with running_system(provisioned, tmp, cfg) as sys_:
        yield sys_


async def spend_rows(system: System, **params: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=system.ingress_url, headers=AUTH) as http:
        r = await http.get("/spend/logs", params=params)
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()
    return rows


async def wait_rows(system: System, count: int, **params: str) -> list[dict[str, Any]]:
    for _ in range(100):
        rows = await spend_rows(system, **params)
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.1)
    raise AssertionError(f"{count} rows for {params} never appeared:\n{system.logs()}")


async def test_every_service_is_healthy_behind_one_base_url(system: System) -> None:
    async with httpx.AsyncClient() as http:
        for name in ("ingress", "admin", "ledger", "exporter", "alerter"):
            r = await http.get(f"{system.url(name)}/health")
            assert r.status_code == 200, (name, r.text)
            assert (await http.get(f"{system.url(name)}/metrics")).status_code == 200


async def test_plain_and_streamed_calls_land_as_spend_rows(
    system: System, upstream: FakeUpstream
) -> None:
    client = openai.AsyncOpenAI(
        base_url=f"{system.ingress_url}/v1", api_key=MASTER_KEY, max_retries=0
    )
    plain = await client.chat.completions.with_raw_response.create(
        model="fake",
        messages=[{"role": "user", "content": "count these four words"}],
        extra_body={"litellm_session_id": "e2e-session", "metadata": {"tags": ["e2e", "plain"]}},
    )
    stream = await client.chat.completions.with_raw_response.create(
        model="fake",
        messages=[{"role": "user", "content": "count these four words"}],
        stream=True,
        extra_body={"litellm_session_id": "e2e-session", "metadata": {"tags": ["e2e", "sse"]}},
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream.parse() if c.choices])
    assert text == upstream.reply
    ids = {plain.headers[names.HDR_CALL_ID], stream.headers[names.HDR_CALL_ID]}

    rows = await wait_rows(system, 2, session_id="e2e-session")
    by_id = {r["request_id"]: r for r in rows}
    assert set(by_id) == ids
    # 4 prompt words x 0.000003 + 5 completion words x 0.000007, streamed or not.
    expected = Decimal("0.000047")
    assert Decimal(plain.headers[names.HDR_RESPONSE_COST]) == expected
    for rid, row in by_id.items():
        assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (4, 5, 9)
        assert Decimal(str(row["spend"])) == expected
        assert row["status"] == "success"
        assert row["session_id"] == "e2e-session"
        assert row["model_group"] == "fake"
        assert "e2e" in row["request_tags"], rid
    assert sorted(tuple(r["request_tags"]) for r in rows) == [("e2e", "plain"), ("e2e", "sse")]


async def test_failing_upstream_gives_openai_error_and_failure_row(
    system: System, upstream: FakeUpstream
) -> None:
    upstream.fail_status = 500
    try:
        async with httpx.AsyncClient(base_url=system.ingress_url, headers=AUTH) as http:
            r = await http.post(
                "/chat/completions",
                json={
                    "model": "fake",
                    "messages": [{"role": "user", "content": "boom"}],
                    "metadata": {"session_id": "e2e-failure"},
                },
            )
    finally:
        upstream.fail_status = None
    assert r.status_code == 500
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"] == "injected failure"
    [row] = await wait_rows(system, 1, session_id="e2e-failure", status="failure")
    assert row["request_id"] == r.headers[names.HDR_CALL_ID]
    assert Decimal(str(row["spend"])) == 0


async def test_demo_model_answers_offline(system: System) -> None:
    async with httpx.AsyncClient(base_url=system.ingress_url, headers=AUTH) as http:
        r = await http.post(
            "/v1/chat/completions",
            json={"model": "demo", "messages": [{"role": "user", "content": "Hello"}]},
        )
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "mocked reply"
    [row] = await wait_rows(system, 1, request_id=r.headers[names.HDR_CALL_ID])
    assert row["model_group"] == "demo"
