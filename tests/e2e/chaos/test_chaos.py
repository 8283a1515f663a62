"""The fault suite: steady load through a scaled-out stack (three-node JetStream cluster,
two replicas of every service behind the round-robin front) while one fault is injected,
then `reconcile`: every call the client was answered for has exactly one spend row, and
the key/team/user totals, the response-header costs and the spend counter agree to the cent.

Short form (in `./just test`): one replica of each service killed at once, the stream
leader's NATS node killed, Redis restarted, PostgreSQL and the whole NATS cluster frozen
for 10 s, a logging destination answering 500 for 10 s. Full form (`./just chaos`,
TOLLGATE_CHAOS_FULL=1): each service on its own, a cluster node killed and brought back,
NATS frozen 30 s and 5 min, PostgreSQL 3 min, the destination answering 500 for 60 s.
Each row prints served / logged / lost / duplicated; the table closes the run.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Request
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from support.receivers import OtlpReceiver, WebhookReceiver, serving
from tollgate_devstack import reconcile
from tollgate_devstack.loadrun import (
    MASTER,
    LoadRun,
    Stack,
    acquire_shared_stack,
    release_shared_stack,
)

FULL = os.environ.get("TOLLGATE_CHAOS_FULL") == "1"
SERVICES = ("ingress", "ledger", "exporter", "alerter", "admin")
TABLE: list[tuple[str, reconcile.Report]] = []


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    yield acquire_shared_stack()
    release_shared_stack()
    if TABLE:
        print("\nchaos table\n" + reconcile.tally(TABLE))


def _run_fault(
    stack: Stack,
    tmp_path: Path,
    name: str,
    inject: Callable[[LoadRun], None],
    before_s: float = 1.5,
    after_s: float = 1.5,
    prepare: Callable[[LoadRun], None] | None = None,
) -> reconcile.Report:
    record = tmp_path / "run.jsonl"
    load = LoadRun(stack.url, record, stack.ingress_urls())
    if prepare is not None:
        prepare(load)
    load.start()
    try:
        time.sleep(before_s)
        inject(load)
        time.sleep(after_s)
    finally:
        load.stop()
    report = reconcile.collect(record, stack.database_url, wait_s=240)
    TABLE.append((name, report))
    print(f"\n--- {name}\n{report.render()}")
    return report


def _assert_exact(report: reconcile.Report) -> None:
    assert report.served > 0, report.render()
    assert (report.lost, report.duplicated) == (0, 0), report.render()
    assert report.ok, report.render()
    # The run's key is valid throughout: no fault may make a replica forget it.
    assert not report.unanswered.get(401), report.render()


def _kill_and_wait(stack: Stack, load: LoadRun, names: list[str]) -> None:
    pids = {}
    for n in names:
        pids[n] = stack.kill(n)
        load.fault(f"kill -9 {n}", resets_counter=n.startswith("ingress"))
    for n in names:
        stack.wait_back(n, pids[n], within_s=120)


# The short form kills one replica of every consumer and admin at once. Ingress is killed in the
# full form: a SIGKILL loses what it answered in its last write-ahead window
# (TOLLGATE_SPOOL_WRITE_AHEAD_MS, 200 ms — the documented bound; 1 call of 2,147 was seen lost),
# so exactly zero is not its guarantee.
KILL_GROUPS = (
    [[f"{s}-1"] for s in SERVICES]
    if FULL
    else [[f"{s}-1" for s in SERVICES if not s.startswith("ingress")]]
)


@pytest.mark.parametrize("victims", KILL_GROUPS, ids="+".join)
def test_kill_9_a_replica_loses_and_doubles_nothing(
    stack: Stack, tmp_path: Path, victims: list[str]
) -> None:
    report = _run_fault(
        stack,
        tmp_path,
        f"kill -9 {', '.join(victims)}",
        lambda load: _kill_and_wait(stack, load, victims),
    )
    _assert_exact(report)


def test_nats_nodes_killed_node_then_stream_leader(stack: Stack, tmp_path: Path) -> None:
    def inject(load: LoadRun) -> None:
        if FULL:
            pid = stack.kill("nats-n2")
            load.fault("kill -9 nats-n2")
            stack.wait_back("nats-n2", pid)
            time.sleep(3)
        leader = stack.nats_leader("LLM") or "nats-n1"
        pid = stack.kill(leader)
        load.fault(f"kill -9 {leader} (LLM stream leader)")
        stack.wait_back(leader, pid)
        time.sleep(3)

    _assert_exact(_run_fault(stack, tmp_path, "NATS node(s) killed (stream leader)", inject))


def test_redis_restarted(stack: Stack, tmp_path: Path) -> None:
    def inject(load: LoadRun) -> None:
        pid = stack.kill("redis")
        load.fault("kill -9 redis (restarted by the supervisor)")
        stack.wait_back("redis", pid)
        time.sleep(2)

    _assert_exact(_run_fault(stack, tmp_path, "Redis restarted", inject))


POSTGRES_S = 180.0 if FULL else 10.0
NATS_FREEZES = (30.0, 300.0) if FULL else (10.0,)


def test_postgres_down(stack: Stack, tmp_path: Path) -> None:
    def inject(load: LoadRun) -> None:
        load.fault(f"PostgreSQL frozen {POSTGRES_S:.0f} s")
        with stack.frozen(["postgres"]):
            time.sleep(POSTGRES_S)

    _assert_exact(_run_fault(stack, tmp_path, f"PostgreSQL down {POSTGRES_S:.0f} s", inject))


@pytest.mark.parametrize("seconds", NATS_FREEZES, ids=lambda s: f"{s:.0f}s")
@pytest.mark.timeout(300 + 2 * max(NATS_FREEZES))  # the freeze, then the replay and reconcile
def test_whole_nats_cluster_down(stack: Stack, tmp_path: Path, seconds: float) -> None:
    def inject(load: LoadRun) -> None:
        load.fault(f"NATS cluster frozen {seconds:.0f} s")
        with stack.frozen(stack.names("nats")):
            time.sleep(seconds)

    _assert_exact(_run_fault(stack, tmp_path, f"NATS down {seconds:.0f} s", inject))


SINK_DOWN_S = 60.0 if FULL else 10.0


@dataclass
class TimedOtlp(OtlpReceiver):
    """An OTLP receiver that also notes when each request arrived (wall clock)."""

    arrived: list[tuple[float, bytes]] = field(default_factory=list)

    async def _gate(self, request: Request[Any, Any, Any]) -> Any:
        body, failure = await super()._gate(request)
        with self._lock:
            self.arrived.append((time.time(), body))
        return body, failure

    def latencies(self) -> dict[str, tuple[float, float]]:
        """Per request id: the call's end (epoch s) and the seconds from it to its span's
        first arrival."""
        out: dict[str, tuple[float, float]] = {}
        with self._lock:
            arrived = list(self.arrived)
        for at, body in arrived:
            for rs in ExportTraceServiceRequest.FromString(body).resource_spans:
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        rid = next(
                            (
                                a.value.string_value
                                for a in span.attributes
                                if a.key == "tollgate.request.id"
                            ),
                            "",
                        )
                        end = span.end_time_unix_nano / 1e9
                        out.setdefault(rid, (end, at - end))
        return out


def _route_team(stack: Stack, load: LoadRun, callbacks: list[dict[str, Any]]) -> None:
    """The run's team logs to `callbacks`; returns once every exporter replica routes them."""
    team = f"team-{load.run_id}"
    auth = {"Authorization": f"Bearer {MASTER}"}
    for cb in callbacks:
        resp = httpx.post(f"{stack.url}/team/{team}/callback", json=cb, headers=auth, timeout=30)
        assert resp.status_code == 200, resp.text
    wanted = {cb["callback_name"] for cb in callbacks}
    deadline = time.monotonic() + 30
    for name in stack.names("exporter"):
        url = f"http://127.0.0.1:{stack.unit(name)['port']}/key/health"
        while True:
            body = httpx.post(url, headers={"Authorization": f"Bearer {load.key}"}, timeout=5)
            routed = set((body.json().get("logging_callbacks") or {}).get("callbacks") or [])
            if routed >= wanted:
                break
            assert time.monotonic() < deadline, (name, body.text)
            time.sleep(0.2)


def test_a_sink_answering_500_loses_nothing_and_delays_no_other(
    stack: Stack, tmp_path: Path
) -> None:
    """One destination answers 500 for SINK_DOWN_S: once it is back every event reaches it
    exactly once; the other destination's delivery latency during the outage stays low."""
    window: dict[str, float] = {}
    with serving(WebhookReceiver()) as failing, serving(TimedOtlp()) as other:

        def prepare(load: LoadRun) -> None:
            _route_team(
                stack,
                load,
                [
                    {
                        "callback_name": "webhook",
                        "callback_type": "success_and_failure",
                        "callback_vars": {"webhook_url": failing.url("chaos")},
                    },
                    {
                        "callback_name": "otel",
                        "callback_type": "success_and_failure",
                        "callback_vars": {
                            "otel_exporter": "otlp_http",
                            "otel_endpoint": other.base_url,
                        },
                    },
                ],
            )

        def inject(load: LoadRun) -> None:
            failing.fail_status = 500
            window["start"] = time.time()
            load.fault(f"webhook destination answers 500 for {SINK_DOWN_S:.0f} s")
            time.sleep(SINK_DOWN_S)
            failing.fail_status = None
            window["end"] = time.time()

        name = f"a sink answering 500 for {SINK_DOWN_S:.0f} s"
        report = _run_fault(stack, tmp_path, name, inject, prepare=prepare)
        _, calls, _ = reconcile.read_record(tmp_path / "run.jsonl")
        served = {c.call_id for c in calls if c.served and c.call_id}

        def hook_counts() -> Counter[str]:
            return Counter(str(e.get("request_id")) for e in failing.events())

        recovered = time.monotonic()
        deadline = recovered + 120
        while not served <= set(hook_counts()) or not served <= set(other.latencies()):
            assert time.monotonic() < deadline, "events missing after the destination recovered"
            time.sleep(0.5)
        caught_up_s = time.monotonic() - recovered
        time.sleep(3)  # a second delivery would come within the batch wait and a retry
        per_hook = hook_counts()
        with other._lock:
            otlp_ids = Counter(str(s.attributes.get("tollgate.request.id")) for s in other.spans)
        latencies = other.latencies()
        failed_attempts = failing.attempts - len(failing.payloads)
    timed = [latencies[c] for c in served]
    out_lat = sorted(lat for end, lat in timed if window["start"] <= end <= window["end"])
    in_lat = sorted(lat for end, lat in timed if not window["start"] <= end <= window["end"])
    doubled = [c for c in served if per_hook[c] != 1 or otlp_ids[c] != 1]
    p95 = out_lat[int(0.95 * (len(out_lat) - 1))] if out_lat else 0.0
    print(
        f"{len(served)} served; failing webhook: {failed_attempts} refused attempts, all "
        f"{len(per_hook)} events delivered ({caught_up_s:.1f} s after reconcile), doubled "
        f"{len(doubled)}; other destination (OTLP) latency during the outage: median "
        f"{statistics.median(out_lat) if out_lat else 0:.2f} s, p95 {p95:.2f} s, max "
        f"{max(out_lat, default=0):.2f} s ({len(out_lat)} calls); outside it median "
        f"{statistics.median(in_lat) if in_lat else 0:.2f} s"
    )
    _assert_exact(report)
    assert failed_attempts > 0, "the destination was never called during the outage"
    assert not doubled, {c: (per_hook[c], otlp_ids[c]) for c in doubled[:5]}
    assert out_lat, "no call ended during the outage"
    # Not held behind the failing destination (that would be seconds up to the outage).
    assert p95 < 5.0, out_lat[-10:]
