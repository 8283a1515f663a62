"""The ledger as a real process: events in on JetStream, rows out over HTTP, totals in KV."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from nats.js import JetStreamContext

from support.builders import admin_change, completed, failed
from support.processes import start_service, stop_service
from tollgate_devstack.embedded import StackUrls, free_port
from tollgate_shared import names
from tollgate_shared.events import LlmRequestCompleted, LlmRequestFailed
from tollgate_shared.names import AdminSubject
from tollgate_shared.publishing import publish_event
from tollgate_shared.state import SpendState, spend_kv_key

MASTER = "sk-ledger-e2e-master-key"


def event(team: str, n: int, *, fail: bool = False) -> LlmRequestCompleted | LlmRequestFailed:
    start = datetime.now(UTC) - timedelta(seconds=10 - n)
    common: dict[str, Any] = {
        "request_id": f"{team}-r{n}",
        "api_key_hash": f"{team}-key",
        "key_alias": "e2e-alias",
        "team_id": team,
        "requested_model": "demo",
        "start_time": start,
        "end_time": start + timedelta(milliseconds=300),
        "total_latency_ms": 300.0,
        "session_id": f"{team}-s",
        "messages": [{"role": "user", "content": "hi"}],
    }
    if fail:
        return failed(**common, error_class="APIError", error_message="boom", status_code=503)
    return completed(
        **common, prompt_tokens=3, completion_tokens=4, total_tokens=7, spend=Decimal("0.25")
    )


async def poll(
    client: httpx.AsyncClient, path: str, params: dict[str, Any], ready: Any, timeout: float = 30.0
) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        r = await client.get(path, params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        if ready(body):
            return body
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.2)


async def test_ledger_process_records_spend_and_audit(
    js: JetStreamContext,
    provisioned: StackUrls,
    database_url: str,
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"general_settings:\n  master_key: {MASTER}\n  store_prompts_in_spend_logs: true\n"
        "litellm_settings:\n  store_audit_logs: true\n"
    )
    env = {
        **provisioned.env(),
        "TOLLGATE_DATABASE_URL": database_url,
        "TOLLGATE_CONFIG": str(config),
    }
    migrated = subprocess.run(
        [sys.executable, "-m", "tollgate_ledger", "migrate"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr

    svc = await asyncio.to_thread(start_service, "tollgate_ledger", free_port(), env, tmp_path)
    try:
        team = f"e2e-{uuid.uuid4().hex[:8]}"
        for ev in (event(team, 1), event(team, 2), event(team, 3, fail=True)):
            await publish_event(js, ev)
        change = admin_change(
            AdminSubject.TEAM_CREATED,
            object_id=team,
            changed_by="e2e@example.com",
            updated_values={"team_id": team},
        )
        await publish_event(js, change)

        async with httpx.AsyncClient(
            base_url=svc.url, timeout=10, headers={"Authorization": f"Bearer {MASTER}"}
        ) as client:
            assert (
                await client.get("/spend/logs", headers={"Authorization": ""})
            ).status_code == 401
            rows = await poll(client, "/spend/logs", {"team_id": team}, lambda b: len(b) == 3)
            by_id = {r["request_id"]: r for r in rows}
            assert by_id[f"{team}-r1"]["spend"] == 0.25
            assert by_id[f"{team}-r1"]["total_tokens"] == 7
            assert by_id[f"{team}-r1"]["messages"] == [{"role": "user", "content": "hi"}]
            assert by_id[f"{team}-r3"]["status"] == "failure"
            session = (await client.get(f"/sessions/{team}-s")).json()
            assert session["request_count"] == 3
            audit = await poll(client, "/audit", {"object_id": team}, lambda b: b["total"] == 1)
            assert audit["audit_logs"][0]["changed_by"] == "e2e@example.com"
            metrics = (await client.get("/metrics", headers={})).text
            assert 'tollgate_ledger_rows_written_total{table="spend_logs"}' in metrics

        # Announced after each commit (at most every 0.1 s): the last total arrives last.
        kv = await js.key_value(names.KV_SPEND)
        spend = None
        for _ in range(50):
            try:
                entry = await kv.get(spend_kv_key("team", team))
                spend = SpendState.model_validate_json(entry.value or b"").spend
            except Exception:
                spend = None
            if spend == Decimal("0.50"):
                break
            await asyncio.sleep(0.1)
        assert spend == Decimal("0.50")
    finally:
        await asyncio.to_thread(stop_service, svc)
    assert svc.proc.returncode in (0, -2), svc.logs()[-3000:]
