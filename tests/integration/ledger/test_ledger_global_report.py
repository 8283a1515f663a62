"""/global/spend/report, /global/spend/logs and /spend/tags in LiteLLM's shapes and parameters
over a real database: grouped by team, customer and key, narrowed by key, user, team and
customer, scoped to a virtual key's own spend; and ingress forwards /global/* to the ledger."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from ledger_support import T0, make_completed, make_failed
from litestar.testing import AsyncTestClient
from nats.js import JetStreamContext

from tollgate_devstack.embedded import StackUrls
from tollgate_ingress.forwarding import Owners
from tollgate_ledger.app import create_app
from tollgate_ledger.policy import LedgerPolicy
from tollgate_ledger.projections.spend import SpendProjection
from tollgate_ledger.rows import spend_row
from tollgate_ledger.settings import LedgerSettings
from tollgate_shared import names
from tollgate_shared.config import parse_config
from tollgate_shared.state import KeyState, hash_key

MASTER = "sk-ledger-report-master-key"
AUTH = {"Authorization": f"Bearer {MASTER}"}
DAY0, DAY1 = (T0 - timedelta(days=1)).date().isoformat(), T0.date().isoformat()
RANGE = {"start_date": DAY0, "end_date": DAY1}


@pytest.fixture
async def world(pool: asyncpg.Pool, js: JetStreamContext) -> AsyncIterator[dict[str, Any]]:
    """Team A (aliased) calls with key A on two days, two models, customers c1 and c2; team B
    (no alias) calls with key B, customer c1, and fails once. Each call is tagged with its side
    and a tag both share. Key A is a live virtual key in admin's bucket."""
    tag = uuid.uuid4().hex[:8]
    teams = {"a": f"rep-a-{tag}", "b": f"rep-b-{tag}"}
    keys = {"a": f"sk-rep-a-{tag}", "b": f"sk-rep-b-{tag}"}
    c1, c2 = f"c1-{tag}", f"c2-{tag}"
    calls = [
        # side, n, day offset, model, customer, spend
        ("a", 0, 1, "gpt-4o", c1, "0.010"),
        ("a", 1, 0, "gpt-4o", c1, "0.020"),
        ("a", 2, 0, "claude-3", c2, "0.040"),
        ("b", 0, 0, "gpt-4o", c1, "0.100"),
    ]
    events = [
        make_completed(
            teams[side],
            n,
            api_key_hash=hash_key(keys[side]),
            team_alias=f"alias-a-{tag}" if side == "a" else None,
            user_id=f"user-{side}-{tag}",
            end_user=customer,
            model=model,
            spend=Decimal(spend),
            start_time=T0 - timedelta(days=back, seconds=-n),
            end_time=T0 - timedelta(days=back, seconds=-n) + timedelta(milliseconds=300),
            prompt_tokens=10 * (n + 1),
            completion_tokens=n + 1,
            total_tokens=11 * (n + 1),
            tags=[f"tag-{side}-{tag}", f"both-{tag}"],
        )
        for side, n, back, model, customer, spend in calls
    ] + [
        # A failed call: logged, tagged, spending nothing.
        make_failed(
            teams["b"],
            1,
            api_key_hash=hash_key(keys["b"]),
            team_alias=None,
            user_id=f"user-b-{tag}",
            end_user=c1,
            model="gpt-4o",
            start_time=T0 + timedelta(seconds=1),
            end_time=T0 + timedelta(seconds=2),
            tags=[f"tag-b-{tag}", f"both-{tag}"],
        )
    ]
    async with pool.acquire() as conn, conn.transaction():
        await SpendProjection(names.SCHEMA_LEDGER).write(
            conn, [spend_row(e, LedgerPolicy()) for e in events]
        )
    kv = await js.key_value(names.KV_KEYS)
    state = KeyState(token=hash_key(keys["a"]), team_id=teams["a"])
    await kv.put(state.token, state.model_dump_json().encode())
    try:
        yield {"tag": tag, "teams": teams, "keys": keys, "c1": c1, "c2": c2}
    finally:
        with contextlib.suppress(Exception):
            await kv.delete(hash_key(keys["a"]))


@pytest.fixture
async def client(
    ledger_db: str, provisioned: StackUrls, world: dict[str, Any]
) -> AsyncIterator[AsyncTestClient[Any]]:
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


async def report(client: AsyncTestClient[Any], key: str = MASTER, **params: str) -> Any:
    r = await client.get(
        "/global/spend/report",
        params={**RANGE, **params},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 200, r.text
    return r.json()


def entries(days: list[dict[str, Any]], group: str, field: str, values: set[str]) -> dict:
    """{(day, value): entry} of the day lists' entries whose `field` is one of `values`."""
    return {(d["group_by_day"], e[field]): e for d in days for e in d[group] if e[field] in values}


async def test_report_by_team_customer_and_key(
    client: AsyncTestClient[Any], world: dict[str, Any]
) -> None:
    a, b, tag = world["teams"]["a"], world["teams"]["b"], world["tag"]
    key_a, key_b = hash_key(world["keys"]["a"]), hash_key(world["keys"]["b"])

    days = await report(client)  # group_by=team is LiteLLM's default
    assert [d["group_by_day"] for d in days] == sorted(d["group_by_day"] for d in days)
    mine = entries(days, "teams", "team_id", {a, b})
    assert set(mine) == {(DAY0, a), (DAY1, a), (DAY1, b)}
    team_a = mine[(DAY1, a)]
    assert set(team_a) == {"team_name", "team_id", "total_spend", "metadata"}
    assert team_a["team_name"] == f"alias-a-{tag}"
    assert mine[(DAY1, b)]["team_name"] == b  # no alias: its id
    assert Decimal(str(team_a["total_spend"])) == Decimal("0.060")
    assert sorted(
        (m["model"], m["api_key"], Decimal(str(m["spend"])), m["total_tokens"])
        for m in team_a["metadata"]
    ) == [("claude-3", key_a, Decimal("0.040"), 33), ("gpt-4o", key_a, Decimal("0.020"), 22)]

    days = await report(client, group_by="customer")
    mine = entries(days, "customers", "customer", {world["c1"], world["c2"]})
    assert {k: Decimal(str(e["total_spend"])) for k, e in mine.items()} == {
        (DAY0, world["c1"]): Decimal("0.010"),
        (DAY1, world["c1"]): Decimal("0.120"),
        (DAY1, world["c2"]): Decimal("0.040"),
    }

    by_key = {k["api_key"]: k for k in await report(client, group_by="api_key")}
    ka = by_key[key_a]
    assert set(ka) == {
        "api_key",
        "total_cost",
        "total_input_tokens",
        "total_output_tokens",
        "model_details",
    }
    assert (
        Decimal(str(ka["total_cost"])),
        ka["total_input_tokens"],
        ka["total_output_tokens"],
    ) == (
        Decimal("0.070"),
        60,
        6,
    )
    assert [m["model"] for m in ka["model_details"]] == ["claude-3", "gpt-4o"]
    assert ka["model_details"][1]["total_input_tokens"] == 30
    assert Decimal(str(by_key[key_b]["total_cost"])) == Decimal("0.100")


async def test_report_narrowed_like_litellm(
    client: AsyncTestClient[Any], world: dict[str, Any]
) -> None:
    a, key_a = world["teams"]["a"], hash_key(world["keys"]["a"])
    # api_key (plaintext or hash) and internal_user_id answer in the per-key shape.
    for params in ({"api_key": world["keys"]["a"]}, {"api_key": key_a}):
        only = await report(client, **params)
        assert [k["api_key"] for k in only] == [key_a]
    only = await report(client, internal_user_id=f"user-b-{world['tag']}")
    assert [k["api_key"] for k in only] == [hash_key(world["keys"]["b"])]
    # team_id with customer_id: per day, the team's spend by that customer.
    days = await report(client, team_id=a, customer_id=world["c1"])
    assert [(d["group_by_day"], len(d["teams_customers"])) for d in days] == [
        (DAY0, 1),
        (DAY1, 1),
    ]
    entry = days[1]["teams_customers"][0]
    assert (entry["team_id"], entry["customer"]) == (a, world["c1"])
    assert Decimal(str(entry["total_spend"])) == Decimal("0.020")
    # The end day is included; a range before the calls finds nothing.
    one_day = await report(client, start_date=DAY1, end_date=DAY1, team_id=a)
    assert [d["group_by_day"] for d in one_day] == [DAY1]
    early = (T0 - timedelta(days=9)).date().isoformat()
    assert await report(client, start_date=early, end_date=early, team_id=a) == []


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"end_date": "2024-01-01"}, "start_date"),
        ({"start_date": "2024-01-01"}, "end_date"),
        ({**RANGE, "group_by": "model"}, "group_by"),
        ({"start_date": "2024-02-01", "end_date": "2024-01-01"}, "end_date"),
    ],
)
async def test_report_refuses_bad_parameters(
    client: AsyncTestClient[Any], params: dict[str, str], param: str
) -> None:
    r = await client.get("/global/spend/report", params=params, headers=AUTH)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


async def test_virtual_key_reads_only_its_own_report_and_logs(
    client: AsyncTestClient[Any], world: dict[str, Any]
) -> None:
    key_a, key_b = hash_key(world["keys"]["a"]), hash_key(world["keys"]["b"])
    own = world["keys"]["a"]
    days = await report(client, key=own)
    seen = {e["team_id"] for d in days for e in d["teams"]}
    assert seen == {world["teams"]["a"]}
    assert {m["api_key"] for d in days for e in d["teams"] for m in e["metadata"]} == {key_a}
    assert [k["api_key"] for k in await report(client, key=own, group_by="api_key")] == [key_a]
    assert await report(client, key=own, api_key=key_b) == []

    logs = await client.get("/global/spend/logs", headers={"Authorization": f"Bearer {own}"})
    assert logs.status_code == 200
    assert [(d["date"], Decimal(str(d["spend"])), d["api_key"]) for d in logs.json()] == [
        (DAY0, Decimal("0.010"), key_a),
        (DAY1, Decimal("0.060"), key_a),
    ]
    other = await client.get(
        "/global/spend/logs",
        params={"api_key": key_b},
        headers={"Authorization": f"Bearer {own}"},
    )
    assert other.json() == []
    refused = await client.get("/global/spend/report", params=RANGE)
    assert refused.status_code == 401


async def test_global_spend_logs_per_day(
    client: AsyncTestClient[Any], world: dict[str, Any]
) -> None:
    r = await client.get("/global/spend/logs", headers=AUTH)
    assert r.status_code == 200
    days = r.json()
    assert set(days[0]) == {"date", "spend"}
    assert [d["date"] for d in days] == sorted(d["date"] for d in days)
    spend = {d["date"]: Decimal(str(d["spend"])) for d in days}
    # Other tests share the database: this one's spend is at least in each day's total.
    assert spend[DAY0] >= Decimal("0.010")
    assert spend[DAY1] >= Decimal("0.160")
    key_b = world["keys"]["b"]
    for given in (key_b, hash_key(key_b)):
        one = await client.get("/global/spend/logs", params={"api_key": given}, headers=AUTH)
        assert one.json() == [{"date": DAY1, "spend": 0.1, "api_key": hash_key(key_b)}]


async def test_spend_tags_like_litellm(client: AsyncTestClient[Any], world: dict[str, Any]) -> None:
    tag = world["tag"]

    async def tags(key: str = MASTER, **params: str) -> dict[str, tuple[int, Decimal]]:
        r = await client.get(
            "/spend/tags", params=params, headers={"Authorization": f"Bearer {key}"}
        )
        assert r.status_code == 200, r.text
        assert all(
            set(t) == {"individual_request_tag", "log_count", "total_spend"} for t in r.json()
        )
        return {
            t["individual_request_tag"]: (t["log_count"], Decimal(str(t["total_spend"])))
            for t in r.json()
            if t["individual_request_tag"].endswith(tag)
        }

    # As LiteLLM counts them: every logged call carrying the tag, failures too.
    assert await tags() == {
        f"tag-a-{tag}": (3, Decimal("0.070")),
        f"tag-b-{tag}": (2, Decimal("0.100")),
        f"both-{tag}": (5, Decimal("0.170")),
    }
    assert await tags(start_date=DAY1, end_date=DAY1) == {
        f"tag-a-{tag}": (2, Decimal("0.060")),
        f"tag-b-{tag}": (2, Decimal("0.100")),
        f"both-{tag}": (4, Decimal("0.160")),
    }
    # A virtual key: its own calls only.
    assert await tags(world["keys"]["a"]) == {
        f"tag-a-{tag}": (3, Decimal("0.070")),
        f"both-{tag}": (3, Decimal("0.070")),
    }


def test_ingress_forwards_both_to_the_ledger() -> None:
    owners = Owners(admin="http://a", ledger="http://l:4001/", exporter="http://e", alerter="x")
    for path in ("/global/spend/report", "/global/spend/logs"):
        assert owners.url_for(path) == f"http://l:4001{path}"
