"""reconcile: served calls against spend rows, totals and the spend counter, to the cent."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from tollgate_devstack import plan, reconcile
from tollgate_devstack.front import RoundRobin
from tollgate_devstack.reconcile import Call, Fault, LedgerView, RunHeader, RunRecorder

D = Decimal


def _calls(n: int, cost: str = "0.000026") -> list[Call]:
    return [Call(f"c{i}", 200, D(cost)) for i in range(n)]


def _ledger(rows: dict[str, list[str]], total: str | None) -> LedgerView:
    t = None if total is None else D(total)
    return LedgerView(
        {k: [D(v) for v in vs] for k, vs in rows.items()}, {"key": t, "team": t, "user": t}
    )


def test_exact_run_reconciles() -> None:
    calls = [*_calls(3), Call(None, 0, None)]
    ledger = _ledger({f"c{i}": ["0.000026"] for i in range(3)}, "0.000078")
    report = reconcile.reconcile(calls, ledger, D("0.000078"))
    assert (report.served, report.logged, report.lost, report.duplicated) == (3, 3, 0, 0)
    assert report.client_errors == 1
    assert report.ok
    assert "RECONCILED: exact" in report.render()


def test_missing_duplicated_and_cost_differences_are_named() -> None:
    ledger = _ledger({"c0": ["0.000026", "0.000026"], "c1": ["0.000026"]}, "0.000052")
    report = reconcile.reconcile(_calls(3), ledger, None)
    assert report.missing == ["c2"]
    assert report.duplicated == 1
    assert report.differences["spend rows"] == D("-0.000026")
    assert report.differences["key total"] == D("-0.000026")
    assert report.differences["prometheus"] is None
    assert not report.ok


def test_a_restarted_ingress_makes_the_counter_partial_not_a_failure() -> None:
    ledger = _ledger({"c0": ["0.01"]}, "0.01")
    report = reconcile.reconcile(_calls(1, "0.01"), ledger, D("0"), [Fault("kill", True)])
    assert report.prometheus_partial
    assert report.ok
    assert not reconcile.reconcile(_calls(1, "0.01"), ledger, D("0")).ok


def test_counter_compared_to_the_cent() -> None:
    ledger = _ledger({"c0": ["0.014"]}, "0.014")
    assert reconcile.reconcile(_calls(1, "0.014"), ledger, D("0.0139999999")).ok


def test_record_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    rec = RunRecorder(path, RunHeader("r", "h", "t", "u", ("http://x",)))
    rec.call("c0", 200, "0.5")
    rec.call(None, 0, None)
    rec.fault("kill -9 ingress-1", True)
    header, calls, faults = reconcile.read_record(path)
    assert header.ingress_urls == ("http://x",)
    assert calls == [Call("c0", 200, D("0.5")), Call(None, 0, None)]
    assert faults == [Fault("kill -9 ingress-1", True)]


def test_spend_counter_sums_one_keys_samples() -> None:
    text = (
        "# TYPE litellm_spend_metric counter\n"
        'litellm_spend_metric_total{hashed_api_key="h",model="a"} 0.25\n'
        'litellm_spend_metric_total{hashed_api_key="h",model="b"} 0.5\n'
        'litellm_spend_metric_total{hashed_api_key="other",model="a"} 9\n'
    )
    assert reconcile.spend_counter(text, "h") == D("0.75")


def test_replicas_on_consecutive_ports_behind_the_front() -> None:
    chosen = plan.instances(5000, 2)
    assert [(i.name, i.port) for i in chosen[:4]] == [
        ("ingress-1", 5001),
        ("ingress-2", 5002),
        ("admin-1", 5003),
        ("admin-2", 5004),
    ]
    assert plan.front_port(5000, 2) == 5000
    assert plan.front_port(5000, 1) is None
    assert [i.port for i in plan.instances(5000)] == [5000, 5001, 5002, 5003, 5004]


def test_replica_env_points_at_its_peers_and_its_own_spool(tmp_path: Path) -> None:
    ingress2 = next(i for i in plan.instances(5000, 2) if i.name == "ingress-2")
    env = plan.instance_env(ingress2, {}, {}, tmp_path, 5000)
    assert env["TOLLGATE_PORT"] == "5002"
    assert env["TOLLGATE_ADMIN_URL"] == "http://127.0.0.1:5004"
    assert env["TOLLGATE_SPOOL_PATH"].endswith("ingress-spool-2.sqlite3")
    assert env["TOLLGATE_PUBLIC_URL"] == "http://127.0.0.1:5000"


def test_round_robin_rotates_the_try_order() -> None:
    rr = RoundRobin([("h", 1), ("h", 2)])
    assert [o[0][1] for o in (rr.order(), rr.order(), rr.order())] == [1, 2, 1]
    assert rr.order() == [("h", 2), ("h", 1)]
