"""The ledger's read API in-process (Litestar test client) over a real database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from ledger_support import T0, make_completed, make_failed
from litestar.testing import AsyncTestClient

from support.builders import admin_change
from tollgate_devstack.embedded import StackUrls
from tollgate_ledger.app import create_app
from tollgate_ledger.audit import audit_row
from tollgate_ledger.policy import LedgerPolicy
from tollgate_ledger.projections.audit import AuditProjection
from tollgate_ledger.projections.spend import SpendProjection
from tollgate_ledger.rows import spend_row
from tollgate_ledger.settings import LedgerSettings
from tollgate_shared import names
from tollgate_shared.config import parse_config
from tollgate_shared.names import AdminSubject
from tollgate_shared.state import hash_key

MASTER = "sk-ledger-test-master-key"
AUTH = {"Authorization": f"Bearer {MASTER}"}


@pytest.fixture
async def client(ledger_db: str, provisioned: StackUrls) -> AsyncIterator[AsyncTestClient[Any]]:
    settings = LedgerSettings(
        nats_url=provisioned.nats_url,
        database_url=ledger_db,
        consumers_enabled=False,
        master_key=None,
        config=None,
    )
    cfg = parse_config({"general_settings": {"master_key": MASTER}})
    async with AsyncTestClient(app=create_app(settings, cfg)) as c:
        yield c


@pytest.fixture
async def seeded(pool: asyncpg.Pool, team: str) -> dict[str, Any]:
    """12 calls: 10 successes (two keys, one session), 2 failures on another day."""
    plain_key = f"sk-{team}-plaintext"
    events = [
        make_completed(
            team,
            n,
            api_key_hash=hash_key(plain_key) if n % 2 else f"{team}-k0",
            tags=["tag-a", f"{team}-tag"],
        )
        for n in range(10)
    ] + [
        make_failed(
            team,
            n,
            start_time=T0 - timedelta(days=1),
            end_time=T0 - timedelta(days=1),
            session_id=None,
            user_id=f"{team}-other",
        )
        for n in (10, 11)
    ]
    projection = SpendProjection(names.SCHEMA_LEDGER)
    async with pool.acquire() as conn, conn.transaction():
        await projection.write(
            conn, [spend_row(e, LedgerPolicy(store_prompts=True)) for e in events]
        )
    audits = [
        admin_change(
            AdminSubject.KEY_CREATED,
            object_id=f"{team}-o1",
            changed_by="alice",
            updated_values={"api_key": "sk-secret-value-123456"},
        ),
        admin_change(
            AdminSubject.TEAM_UPDATED,
            object_id=team,
            changed_by="bob",
            before_value={"max_budget": 1},
            updated_values={"max_budget": 2},
        ),
        admin_change(
            AdminSubject.KEY_DELETED,
            object_id=f"{team}-o1",
            changed_by="alice",
            updated_values=None,
        ),
    ]
    async with pool.acquire() as conn, conn.transaction():
        await AuditProjection(names.SCHEMA_LEDGER).write(conn, [audit_row(a) for a in audits])
    return {"events": events, "plain_key": plain_key, "audits": audits}


async def test_auth_is_required_and_errors_are_openai_shaped(
    client: AsyncTestClient[Any],
) -> None:
    r = await client.get("/spend/logs")
    assert r.status_code == 401
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["code"] == "401"
    r = await client.get("/spend/logs", headers={"Authorization": "Bearer sk-wrong"})
    assert r.status_code == 401
    r = await client.get("/audit", headers={names.HDR_LITELLM_KEY: MASTER})
    assert r.status_code == 200
    # One rule in every service: x-litellm-api-key is read before Authorization.
    both = {names.HDR_LITELLM_KEY: MASTER, "Authorization": "Bearer sk-wrong"}
    assert (await client.get("/audit", headers=both)).status_code == 200
    both = {names.HDR_LITELLM_KEY: "sk-wrong", "Authorization": f"Bearer {MASTER}"}
    assert (await client.get("/audit", headers=both)).status_code == 401
    health = await client.get("/health")
    assert health.status_code == 200
    assert health.json()["dependencies"]["postgres"]["status"] == "healthy"
    assert (await client.get("/metrics")).status_code == 200


async def test_spend_logs_filters_and_pages(
    client: AsyncTestClient[Any],
    seeded: dict[str, Any],
    team: str,
) -> None:
    r = await client.get("/spend/logs", params={"team_id": team}, headers=AUTH)
    assert r.status_code == 200
    rows = r.json()
    assert len(rows) == 12
    assert r.headers["x-total-count"] == "12"
    assert rows[0]["request_id"] == f"{team}-req-9"  # newest first
    assert rows[0]["spend"] == pytest.approx(0.01)
    assert rows[0]["api_key"] == hash_key(seeded["plain_key"])
    assert rows[0]["metadata"]["user_api_key_team_id"] == team
    assert rows[0]["request_tags"] == ["tag-a", f"{team}-tag"]

    one = (
        await client.get("/spend/logs", params={"request_id": f"{team}-req-4"}, headers=AUTH)
    ).json()
    assert [x["request_id"] for x in one] == [f"{team}-req-4"]
    assert one[0]["messages"] == [{"role": "user", "content": "hello 4"}]

    by_key = (
        await client.get("/spend/logs", params={"api_key": seeded["plain_key"]}, headers=AUTH)
    ).json()
    assert {x["request_id"] for x in by_key} == {f"{team}-req-{n}" for n in (1, 3, 5, 7, 9)}
    by_user = (
        await client.get("/spend/logs", params={"user_id": f"{team}-other"}, headers=AUTH)
    ).json()
    assert {x["status"] for x in by_user} == {"failure"}
    assert len(by_user) == 2
    failures = (
        await client.get("/spend/logs", params={"team_id": team, "status": "failure"}, headers=AUTH)
    ).json()
    assert len(failures) == 2
    sess = (
        await client.get("/spend/logs", params={"session_id": f"{team}-sess"}, headers=AUTH)
    ).json()
    assert len(sess) == 10

    day = T0.date().isoformat()
    ranged = (
        await client.get(
            "/spend/logs",
            headers=AUTH,
            params={"team_id": team, "start_date": day, "end_date": day, "summarize": "false"},
        )
    ).json()
    assert len(ranged) == 10
    summary = (
        await client.get(
            "/spend/logs",
            headers=AUTH,
            params={"start_date": day, "end_date": day, "user_id": f"{team}-user"},
        )
    ).json()
    assert [s["startTime"] for s in summary] == [day]
    assert Decimal(str(summary[0]["spend"])) == sum(
        (e.spend for e in seeded["events"][:10]), Decimal(0)
    )

    pages = []
    for page in (1, 2, 3):
        r = await client.get(
            "/spend/logs", headers=AUTH, params={"team_id": team, "page": page, "page_size": 5}
        )
        assert r.headers["x-total-pages"] == "3"
        pages.append([x["request_id"] for x in r.json()])
    assert [len(p) for p in pages] == [5, 5, 2]
    assert len({rid for p in pages for rid in p}) == 12


async def test_spend_logs_v2_envelope(
    client: AsyncTestClient[Any],
    seeded: dict[str, Any],
    team: str,
) -> None:
    r = await client.get(
        "/spend/logs/v2",
        headers=AUTH,
        params={"team_id": team, "page": 2, "page_size": 5, "status_filter": "success"},
    )
    body = r.json()
    assert {k: body[k] for k in ("total", "page", "page_size", "total_pages")} == {
        "total": 10,
        "page": 2,
        "page_size": 5,
        "total_pages": 2,
    }
    assert len(body["data"]) == 5
    asc = (
        await client.get(
            "/spend/logs/ui",
            headers=AUTH,
            params={"team_id": team, "sort_order": "asc", "page_size": 1},
        )
    ).json()
    assert asc["data"][0]["request_id"] in {f"{team}-req-10", f"{team}-req-11"}
    big = (
        await client.get(
            "/spend/logs/v2", headers=AUTH, params={"team_id": team, "min_spend": "0.009"}
        )
    ).json()
    assert {x["request_id"] for x in big["data"]} == {f"{team}-req-8", f"{team}-req-9"}


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/spend/logs", {"status": "bogus"}, "status"),
        ("/spend/logs", {"start_date": "yesterday"}, "start_date"),
        ("/spend/logs", {"end_date": "2025-13-45"}, "end_date"),
        ("/spend/logs", {"page": "0"}, "page"),
        ("/spend/logs", {"page_size": "abc"}, "page_size"),
        ("/spend/logs", {"page_size": "100000"}, "page_size"),
        ("/spend/logs", {"summarize": "maybe"}, "summarize"),
        ("/spend/logs", {"start_date": "2025-02-02", "end_date": "2025-02-01"}, "end_date"),
        ("/spend/logs/v2", {"status_filter": "x"}, "status_filter"),
        ("/spend/logs/v2", {"min_spend": "lots"}, "min_spend"),
        ("/spend/logs/v2", {"sort_order": "sideways"}, "sort_order"),
        ("/spend/totals", {"entity": "planet"}, "entity"),
        ("/audit", {"page_size": "-1"}, "page_size"),
        ("/audit", {"start_date": "soon"}, "start_date"),
        ("/global/spend/keys", {"limit": "0"}, "limit"),
    ],
)
async def test_bad_filters_are_400_naming_the_field(
    client: AsyncTestClient[Any],
    path: str,
    params: dict[str, str],
    param: str,
) -> None:
    r = await client.get(path, params=params, headers=AUTH)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param
    assert param in err["message"]


async def test_sessions_totals_and_global_views(
    client: AsyncTestClient[Any],
    seeded: dict[str, Any],
    team: str,
) -> None:
    events = seeded["events"]
    s = (await client.get(f"/sessions/{team}-sess", headers=AUTH)).json()
    assert s["request_count"] == 10
    assert Decimal(str(s["spend"])) == sum((e.spend for e in events[:10]), Decimal(0))
    assert [x["request_id"] for x in s["requests"]] == [f"{team}-req-{n}" for n in range(10)]
    missing = await client.get("/sessions/nope-nothing", headers=AUTH)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "404"
    listed = (await client.get("/sessions", headers=AUTH)).json()
    assert f"{team}-sess" in {x["session_id"] for x in listed["data"]}

    totals = (
        await client.get(
            "/spend/totals", headers=AUTH, params={"entity": "team", "entity_id": team}
        )
    ).json()
    assert totals["total"] == 1
    assert Decimal(str(totals["data"][0]["spend"])) == sum((e.spend for e in events), Decimal(0))
    keys = (await client.get("/global/spend/keys", headers=AUTH)).json()
    mine = {k["api_key"]: k for k in keys if k["api_key"] == f"{team}-k0"}
    assert mine[f"{team}-k0"]["key_alias"] == "alias-0"
    teams = (await client.get("/global/spend/teams", headers=AUTH)).json()
    assert f"{team}-alias" in teams["teams"]
    models = (await client.get("/global/spend/models", headers=AUTH)).json()
    assert "gpt-4o" in {m["model"] for m in models}
    tags = (await client.get("/spend/tags", headers=AUTH)).json()
    tag = next(t for t in tags if t["individual_request_tag"] == f"{team}-tag")
    assert tag["log_count"] == 10
    spend = (await client.get("/global/spend", headers=AUTH)).json()
    assert spend["spend"] > 0


async def test_audit_logs(client: AsyncTestClient[Any], seeded: dict[str, Any], team: str) -> None:
    r = (await client.get("/audit", headers=AUTH, params={"object_id": f"{team}-o1"})).json()
    assert r["total"] == 2
    assert [x["action"] for x in r["audit_logs"]] == ["deleted", "created"]
    assert {x["table_name"] for x in r["audit_logs"]} == {"LiteLLM_VerificationToken"}
    created = r["audit_logs"][1]
    assert created["updated_values"]["api_key"] != "sk-secret-value-123456"
    by_entity = (
        await client.get(
            "/audit/logs",
            headers=AUTH,
            params={"table_name": "team", "object_id": team, "action": "updated"},
        )
    ).json()
    assert by_entity["total"] == 1
    assert by_entity["audit_logs"][0]["before_value"] == {"max_budget": 1}
    by_who = (
        await client.get(
            "/audit",
            headers=AUTH,
            params={"changed_by": "alice", "object_id": f"{team}-o1", "page_size": 1, "page": 2},
        )
    ).json()
    assert (by_who["total"], by_who["total_pages"], len(by_who["audit_logs"])) == (2, 2, 1)
    one = (await client.get(f"/audit/{created['id']}", headers=AUTH)).json()
    assert one["object_id"] == f"{team}-o1"
    assert (await client.get("/audit/does-not-exist", headers=AUTH)).status_code == 404
