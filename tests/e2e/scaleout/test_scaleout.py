"""Scale-out, run here: `up --cluster --replicas 2` (three-node JetStream cluster, streams
and KV at R3, two replicas of every service, ingress behind the round-robin front).

- ledger replicas split the durable consumer: both write spend rows, none missing or
  doubled, totals exact (reconcile);
- ingress replicas enforce one rate limit and one budget together;
- admin replicas both serve writes, and the key bucket ends equal to PostgreSQL after
  concurrent updates of one key on both;
- exporter replicas deliver each event exactly once to each of two destinations (a
  webhook and an OTLP collector) while both replicas route the team;
- alerter replicas send each alert once under a concurrent burst (upstream 503s: every
  failure in exactly one `llm_exceptions` message, one minor and one major outage, one
  budget alert), the Redis claims holding across replicas;
- per-replica ledger throughput is printed; `./just scaleout` (TOLLGATE_SCALEOUT_FULL=1)
  also measures the ledger's and the exporter's events/s with 1 and 2 replicas.

The stack is shared with the fault suite (tests/e2e/chaos) when both run in one session.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import httpx
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from prometheus_client.parser import text_string_to_metric_families

from support import builders
from support.alert_receivers import AlertReceiver
from support.fake_upstream import FakeUpstream, serve_in_thread
from support.receivers import OtlpReceiver, WebhookReceiver, serving
from tollgate_devstack import reconcile
from tollgate_devstack.loadrun import (
    BROKEN_MODEL,
    MASTER,
    LoadRun,
    Stack,
    acquire_shared_stack,
    create_run_entities,
    release_shared_stack,
    wait_key_works,
)
from tollgate_shared import names
from tollgate_shared.names import ConsumerSpec
from tollgate_shared.publishing import connect_nats, publish_event
from tollgate_shared.settings import NatsAuth
from tollgate_shared.state import hash_key

AUTH = {"Authorization": f"Bearer {MASTER}"}
CHAT = {"model": "demo", "messages": [{"role": "user", "content": "Hello"}]}
FULL = os.environ.get("TOLLGATE_SCALEOUT_FULL") == "1"
EXPORT_CALLS = 400 if FULL else 60


@pytest.fixture(scope="session")
def scaled() -> Iterator[Stack]:
    yield acquire_shared_stack()
    release_shared_stack()


def _ledger_rows(stack: Stack) -> dict[str, float]:
    """`tollgate_ledger_rows_written_total{table="spend_logs"}` per ledger replica."""
    out: dict[str, float] = {}
    for name in stack.names("ledger"):
        text = httpx.get(f"http://127.0.0.1:{stack.unit(name)['port']}/metrics", timeout=5).text
        out[name] = sum(
            s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "tollgate_ledger_rows_written_total"
            and s.labels.get("table") == "spend_logs"
        )
    return out


def test_ledger_replicas_split_the_durable_and_count_exactly(scaled: Stack, tmp_path: Path) -> None:
    before = _ledger_rows(scaled)
    record = tmp_path / "run.jsonl"
    load = LoadRun(scaled.url, record, scaled.ingress_urls(), threads=4).start()
    started = time.monotonic()
    time.sleep(8)
    load.stop()
    report = reconcile.collect(record, scaled.database_url, wait_s=120)
    elapsed = time.monotonic() - started
    after = _ledger_rows(scaled)
    per_replica = {n: after[n] - before.get(n, 0) for n in after}
    print(f"\n{report.render()}\nspend rows per ledger replica: {per_replica}")
    print(
        "rows/s per replica over the run: "
        + ", ".join(f"{n} {v / elapsed:.0f}" for n, v in per_replica.items())
    )
    assert report.ok, report.render()
    assert (report.lost, report.duplicated) == (0, 0)
    # Both replicas took part in the shared durable (pull consumers split the messages).
    assert all(v > 0 for v in per_replica.values()), per_replica


def _post(url: str, key: str) -> int:
    with httpx.Client(timeout=15) as c:  # a new connection: the front alternates replicas
        return c.post(
            f"{url}/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"}
        ).status_code


def test_ingress_replicas_enforce_one_rate_limit(scaled: Stack) -> None:
    key, _, _ = create_run_entities(scaled.url, f"rpm{int(time.time())}", rpm_limit=5)
    wait_key_works(scaled.url, key)
    # Limits count in fixed one-minute windows: keep the 16 calls inside one of them.
    if time.time() % 60 > 45:
        time.sleep(61 - time.time() % 60)
    codes = [_post(scaled.url, key) for _ in range(16)]
    assert codes.count(200) == 5, codes
    assert codes.count(429) == 11, codes


def test_ingress_replicas_enforce_one_budget(scaled: Stack, tmp_path: Path) -> None:
    # One demo call costs 0.000026: the budget fits one, 20 parallel calls across replicas.
    key, _, _ = create_run_entities(scaled.url, f"bud{int(time.time())}", max_budget=0.00004)
    wait_key_works(scaled.url, key)
    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(lambda _: _post(scaled.url, key), range(20)))
    served = codes.count(200)
    print(f"\nbudget fits one call; 20 parallel calls over 2 replicas: {served} served, {codes}")
    assert served == 1, codes


async def _connect_as(nats_url: str, user: str, password: str) -> NATS:
    """A client of the stack's NATS as `user` (with that user's own inbox prefix)."""
    return await connect_nats(
        nats_url, "test-scaleout", auth=NatsAuth(user=user, password=password)
    )


async def _kv_metadata(nats_url: str, password: str, key_hash: str) -> object:
    nc = await _connect_as(nats_url, "ingress", password)
    try:
        kv = await nc.jetstream().key_value(names.KV_KEYS)
        entry = await kv.get(key_hash)
        assert entry.value is not None
        return json.loads(entry.value).get("metadata")
    finally:
        await nc.close()


def test_admin_replicas_serve_writes_without_lost_updates(scaled: Stack) -> None:
    admins = [f"http://127.0.0.1:{scaled.unit(n)['port']}" for n in scaled.names("admin")]
    assert len(admins) == 2
    made = httpx.post(f"{admins[1]}/key/generate", json={}, headers=AUTH, timeout=30)
    assert made.status_code == 200, made.text
    key = made.json()["key"]
    wait_key_works(scaled.url, key)  # written by admin-2, honoured by ingress replicas

    errors: list[str] = []

    def writer(admin: str, start: int) -> None:
        with httpx.Client(timeout=30, headers=AUTH) as c:
            for i in range(start, 40, 2):
                resp = c.post(f"{admin}/key/update", json={"key": key, "metadata": {"n": i}})
                if resp.status_code != 200:
                    errors.append(resp.text)

    threads = [threading.Thread(target=writer, args=(a, n)) for n, a in enumerate(admins)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    stored = httpx.get(
        f"{admins[0]}/key/info", params={"key": key}, headers=AUTH, timeout=10
    ).json()
    info = stored.get("info", stored)
    truth = info.get("metadata")
    passwords = json.loads((scaled.data_dir / "nats" / "users.json").read_text())
    nats_url = scaled.status["servers"]["TOLLGATE_NATS_URL"]
    deadline = time.monotonic() + 15
    seen = asyncio.run(_kv_metadata(nats_url, passwords["ingress"], hash_key(key)))
    while seen != truth and time.monotonic() < deadline:
        time.sleep(0.5)
        seen = asyncio.run(_kv_metadata(nats_url, passwords["ingress"], hash_key(key)))
    assert seen == truth, (seen, truth)
    assert isinstance(truth, dict)
    assert truth.get("n") in (38, 39)


# --- exporter and alerter replicas ------------------------------------------------------


def _exported(stack: Stack) -> dict[str, float]:
    """`tollgate_exporter_exported_total` (all destinations) per exporter replica."""
    out: dict[str, float] = {}
    for name in stack.names("exporter"):
        text = httpx.get(f"http://127.0.0.1:{stack.unit(name)['port']}/metrics", timeout=5).text
        out[name] = sum(
            s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "tollgate_exporter_exported_total"
        )
    return out


def route_team_to(stack: Stack, team_id: str, key: str, callbacks: list[dict[str, object]]) -> None:
    """Give the team its callbacks, then wait until every exporter replica routes the key's
    calls to all of them (each replica learns the team from the KV bucket)."""
    with httpx.Client(base_url=stack.url, headers=AUTH, timeout=30) as http:
        for cb in callbacks:
            resp = http.post(f"/team/{team_id}/callback", json=cb)
            assert resp.status_code == 200, resp.text
    wanted = {str(cb["callback_name"]) for cb in callbacks}
    deadline = time.monotonic() + 30
    for name in stack.names("exporter"):
        url = f"http://127.0.0.1:{stack.unit(name)['port']}/key/health"
        while True:
            body = httpx.post(url, headers={"Authorization": f"Bearer {key}"}, timeout=5).json()
            routed = set((body.get("logging_callbacks") or {}).get("callbacks") or [])
            if routed >= wanted:
                break
            assert time.monotonic() < deadline, (name, body)
            time.sleep(0.2)


def _call_ids(url: str, key: str, n: int, threads: int = 4) -> list[str]:
    def one(_: int) -> str | None:
        with httpx.Client(timeout=15) as c:
            resp = c.post(
                f"{url}/v1/chat/completions",
                json=CHAT,
                headers={"Authorization": f"Bearer {key}"},
            )
            return resp.headers.get(names.HDR_CALL_ID) if resp.status_code == 200 else None

    with ThreadPoolExecutor(threads) as pool:
        return [c for c in pool.map(one, range(n)) if c]


def otlp_request_ids(otlp: OtlpReceiver) -> list[str]:
    with otlp._lock:
        spans = list(otlp.spans)
    return [str(s.attributes.get("tollgate.request.id")) for s in spans]


def test_exporter_replicas_deliver_each_event_once_per_destination(scaled: Stack) -> None:
    with serving(WebhookReceiver()) as hook, serving(OtlpReceiver()) as otlp:
        key, team, _ = create_run_entities(scaled.url, f"exp{int(time.time())}")
        wait_key_works(scaled.url, key)
        route_team_to(
            scaled,
            team,
            key,
            [
                {
                    "callback_name": "webhook",
                    "callback_type": "success_and_failure",
                    "callback_vars": {"webhook_url": hook.url("scaleout")},
                },
                {
                    "callback_name": "otel",
                    "callback_type": "success_and_failure",
                    "callback_vars": {"otel_exporter": "otlp_http", "otel_endpoint": otlp.base_url},
                },
            ],
        )
        before = _exported(scaled)
        calls = _call_ids(scaled.url, key, EXPORT_CALLS)
        assert len(calls) == EXPORT_CALLS

        def delivered() -> tuple[Counter[str], Counter[str]]:
            return (
                Counter(str(e.get("request_id")) for e in hook.events()),
                Counter(otlp_request_ids(otlp)),
            )

        deadline = time.monotonic() + 60
        while not all(set(calls) <= set(d) for d in delivered()):
            assert time.monotonic() < deadline, "not every event reached both destinations"
            time.sleep(0.3)
        time.sleep(3)  # a second delivery would come within the batch wait and a retry
        per_hook, per_otlp = delivered()
        after = _exported(scaled)
    per_replica = {n: after[n] - before.get(n, 0) for n in after}
    doubled = [c for c in calls if per_hook[c] != 1 or per_otlp[c] != 1]
    print(
        f"\n{len(calls)} calls, 2 destinations: webhook {sum(per_hook.values())} events, "
        f"OTLP {sum(per_otlp.values())} spans, double exports {len(doubled)}; "
        f"events exported per exporter replica {per_replica}"
    )
    assert not doubled, {c: (per_hook[c], per_otlp[c]) for c in doubled[:5]}
    assert set(per_hook) == set(calls) == set(per_otlp)
    # Both replicas held the routing state and took part.
    assert all(v > 0 for v in per_replica.values()), per_replica


FAILURES = 12


def _call_model(url: str, key: str, model: str) -> int:
    with httpx.Client(timeout=20) as c:
        return c.post(
            f"{url}/v1/chat/completions",
            json={**CHAT, "model": model},
            headers={"Authorization": f"Bearer {key}"},
        ).status_code


def _consumer_states(stack: Stack) -> dict[str, str]:
    """Pending, ack-pending and redelivered counts of the alerter's durables (diagnostics)."""

    async def read() -> dict[str, str]:
        passwords = json.loads((stack.data_dir / "nats" / "users.json").read_text())
        nats_url = stack.status["servers"]["TOLLGATE_NATS_URL"]
        nc = await _connect_as(nats_url, "provision", passwords["provision"])
        out = {}
        try:
            for spec in (names.ALERTER_LLM, names.ALERTER_LEDGER):
                info = await nc.jetstream().consumer_info(spec.stream, spec.name)
                out[spec.name] = (
                    f"pending {info.num_pending} ack_pending {info.num_ack_pending} "
                    f"redelivered {info.num_redelivered} waiting {info.num_waiting}"
                )
        finally:
            await nc.close()
        return out

    try:
        return asyncio.run(read())
    except Exception as exc:  # diagnostics only
        return {"error": repr(exc)}


def _folded(text: str) -> int:
    """How many alerts one message carries (`[Num Alerts: N]` folds N)."""
    match = re.match(r"\[Num Alerts: (\d+)\]", text)
    return int(match.group(1)) if match else 1


def test_alerter_replicas_send_each_alert_once(scaled: Stack) -> None:
    up = FakeUpstream(fail_status=503)
    receiver = AlertReceiver()
    with (
        serve_in_thread(up.app(), scaled.reserved["upstream"]),
        serve_in_thread(receiver.app(), scaled.reserved["alerts"]) as alerts_port,
    ):
        receiver.port = alerts_port
        # The key's budget is one demo call: the first served call crosses it.
        key, team, _ = create_run_entities(
            scaled.url, f"alert{int(time.time())}", max_budget=0.000026
        )
        wait_key_works(scaled.url, key)
        with ThreadPoolExecutor(12) as pool:
            broken = list(
                pool.map(lambda _: _call_model(scaled.url, key, BROKEN_MODEL), range(FAILURES))
            )
            demo = list(pool.map(lambda _: _call_model(scaled.url, key, "demo"), range(20)))
        assert all(code >= 500 for code in broken), broken
        assert demo.count(200) >= 1, demo

        def path(alert_type: str) -> str:
            return f"/slack/T0/B0/{alert_type}"

        def exceptions() -> list[str]:
            return [t for t in receiver.texts(path("llm_exceptions")) if "broken-1" in t]

        deadline = time.monotonic() + 60
        while (
            sum(_folded(t) for t in exceptions()) < FAILURES
            or not receiver.texts(path("outage_alerts"), "Major")
            or not receiver.texts(path("budget_alerts"), team)
        ):
            assert time.monotonic() < deadline, (
                f"received {receiver.received}\nattempts {receiver.attempts}\n"
                f"alert consumers {_consumer_states(scaled)}\n"
                + "\n".join(scaled.log_excerpt(s) for s in ("alerter", "ingress"))
            )
            time.sleep(0.3)
        time.sleep(5)  # a duplicate would come from the other replica's window or a retry
        outages = receiver.texts(path("outage_alerts"))
        budgets = receiver.texts(path("budget_alerts"), team)
        folded = [_folded(t) for t in exceptions()]
    print(
        f"\n{FAILURES} upstream failures over 2 alerter replicas: llm_exceptions messages "
        f"{len(folded)} carrying {sum(folded)} alerts; outage messages {len(outages)}; "
        f"budget messages {len(budgets)} (demo calls served {demo.count(200)} of 20)"
    )
    assert sum(folded) == FAILURES, exceptions()
    assert len([t for t in outages if "Minor" in t]) == 1, outages
    assert len([t for t in outages if "Major" in t]) == 1, outages
    assert len(budgets) == 1, budgets
    assert "Budget Crossed" in budgets[0], budgets
    assert _folded(budgets[0]) == 1, budgets


# --- 1 -> 2 replica scaling of the ledger and the exporter (./just scaleout) -------------

SCALE_EVENTS = 3000


def _signal(stack: Stack, names_: list[str], sig: signal.Signals) -> None:
    for n in names_:
        os.kill(int(stack.unit(n)["pid"]), sig)


async def _drained(js: JetStreamContext, spec: ConsumerSpec, within_s: float = 600) -> None:
    deadline = time.monotonic() + within_s
    while True:
        info = await js.consumer_info(spec.stream, spec.name)
        if info.num_pending == 0 and info.num_ack_pending == 0:
            return
        assert time.monotonic() < deadline, f"{spec.name} not drained: {info}"
        await asyncio.sleep(0.05)


async def _measure(
    stack: Stack, replicas: int, team: str, hook: WebhookReceiver
) -> dict[str, float]:
    """Events/s of `replicas` ledger and exporter replicas draining SCALE_EVENTS events
    published beforehand (the consumers are frozen while they are published, so the
    consumer, not the publisher, is the limit)."""
    passwords = json.loads((stack.data_dir / "nats" / "users.json").read_text())
    nats_url = stack.status["servers"]["TOLLGATE_NATS_URL"]
    nc = await _connect_as(nats_url, "ingress", passwords["ingress"])
    js = nc.jetstream()
    # Consumer state is read as the provisioning user (the services' users may not).
    admin_nc = await _connect_as(nats_url, "provision", passwords["provision"])
    admin_js = admin_nc.jetstream()
    consumers = [n for s in ("ledger", "exporter", "alerter") for n in stack.names(s)]
    run = f"scale{replicas}-{int(time.time())}"
    _signal(stack, consumers, signal.SIGSTOP)
    try:
        await asyncio.sleep(2)  # their outstanding pull requests expire (0.5 s)
        events = [
            builders.completed(team_id=team, request_id=f"{run}-{i}") for i in range(SCALE_EVENTS)
        ]
        for i in range(0, len(events), 200):
            await asyncio.gather(*(publish_event(js, e) for e in events[i : i + 200]))
        out: dict[str, float] = {}
        for service, spec in (("ledger", names.LEDGER_SPEND), ("exporter", names.EXPORTER_LLM)):
            started = time.monotonic()
            _signal(stack, stack.names(service)[:replicas], signal.SIGCONT)
            await _drained(admin_js, spec)
            out[service] = SCALE_EVENTS / (time.monotonic() - started)
    finally:
        _signal(stack, consumers, signal.SIGCONT)
        await nc.close()
        await admin_nc.close()
    got = Counter(
        str(e.get("request_id")) for e in hook.events() if str(e.get("request_id")).startswith(run)
    )
    assert len(got) == SCALE_EVENTS
    assert set(got.values()) == {1}
    conn = await asyncpg.connect(stack.database_url)
    try:
        rows = await conn.fetchval(
            "SELECT count(*) FROM ledger.spend_logs WHERE request_id LIKE $1", f"{run}-%"
        )
    finally:
        await conn.close()
    assert rows == SCALE_EVENTS
    return out


@pytest.mark.skipif(not FULL, reason="./just scaleout (TOLLGATE_SCALEOUT_FULL=1)")
@pytest.mark.timeout(1200)
def test_ledger_and_exporter_throughput_from_one_to_two_replicas(scaled: Stack) -> None:
    with serving(WebhookReceiver()) as hook:
        key, team, _ = create_run_entities(scaled.url, f"scale{int(time.time())}")
        route_team_to(
            scaled,
            team,
            key,
            [
                {
                    "callback_name": "webhook",
                    "callback_type": "success_and_failure",
                    "callback_vars": {"webhook_url": hook.url("scale")},
                }
            ],
        )
        one = asyncio.run(_measure(scaled, 1, team, hook))
        two = asyncio.run(_measure(scaled, 2, team, hook))
    lines = [
        f"{s}: 1 replica {one[s]:.0f} events/s, 2 replicas {two[s]:.0f} events/s "
        f"({two[s] / 2:.0f} per replica), x{two[s] / one[s]:.2f}"
        for s in ("ledger", "exporter")
    ]
    print(f"\n{SCALE_EVENTS} events published to JetStream, then drained:\n" + "\n".join(lines))
    assert all(v > 0 for v in (*one.values(), *two.values()))
