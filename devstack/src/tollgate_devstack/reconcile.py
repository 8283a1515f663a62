"""`./just reconcile RUN`: did every call the client was answered for get counted exactly once?

A load run writes a record (JSON lines): a `run` header naming the key, team and user it
created for the run and the ingress URLs, one `call` line per call (the `x-litellm-call-id`
and `x-litellm-response-cost` headers and the status) and `fault` lines for what was
injected. Reconciling compares it with the ledger's spend-log rows of that key, the key's,
team's and user's spend totals and ingress's `litellm_spend_metric_total`, and prints
served / logged / missing / duplicated and every cost difference, exact to the cent
(Decimal; the Prometheus counter is a float and is compared rounded to the cent).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

CENT = Decimal("0.01")
SPEND_METRIC = "litellm_spend_metric_total"
ENTITIES = ("key", "team", "user")


# -- the record ------------------------------------------------------------------------


@dataclass(frozen=True)
class RunHeader:
    run_id: str
    key_hash: str
    team_id: str
    user_id: str
    ingress_urls: tuple[str, ...]
    master_key: str = "sk-1234"

    def entity_ids(self) -> dict[str, str]:
        return {"key": self.key_hash, "team": self.team_id, "user": self.user_id}


@dataclass(frozen=True)
class Call:
    """What the client saw of one call: its id and cost headers (None when absent)."""

    call_id: str | None
    status: int
    cost: Decimal | None

    @property
    def served(self) -> bool:
        return self.status == 200 and self.call_id is not None


@dataclass(frozen=True)
class Fault:
    name: str
    # A restarted ingress starts its counters from zero: its spend counter is partial.
    resets_counter: bool = False


class RunRecorder:
    """Appends a run's record to a file, one JSON line at a time (threads may share it)."""

    def __init__(self, path: Path, header: RunHeader) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write({"type": "run", **asdict(header)}, mode="w")

    def _write(self, obj: Mapping[str, Any], mode: str = "a") -> None:
        line = json.dumps(obj, default=str) + "\n"
        with self._lock, self.path.open(mode) as f:
            f.write(line)

    def call(self, call_id: str | None, status: int, cost: str | None) -> None:
        self._write({"type": "call", "call_id": call_id, "status": status, "cost": cost})

    def fault(self, name: str, resets_counter: bool = False) -> None:
        self._write({"type": "fault", "name": name, "resets_counter": resets_counter})


def read_record(path: Path) -> tuple[RunHeader, list[Call], list[Fault]]:
    header: RunHeader | None = None
    calls: list[Call] = []
    faults: list[Fault] = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        obj = json.loads(line)
        kind = obj.pop("type", None)
        if kind == "run":
            obj["ingress_urls"] = tuple(obj.get("ingress_urls") or ())
            header = RunHeader(**obj)
        elif kind == "call":
            cost = obj.get("cost")
            calls.append(
                Call(obj.get("call_id"), int(obj["status"]), Decimal(cost) if cost else None)
            )
        elif kind == "fault":
            faults.append(Fault(obj["name"], bool(obj.get("resets_counter"))))
        else:
            raise ValueError(f"{path}:{n}: unknown record line type {kind!r}")
    if header is None:
        raise ValueError(f"{path}: no `run` header line")
    return header, calls, faults


# -- the comparison (pure) ---------------------------------------------------------------


@dataclass(frozen=True)
class LedgerView:
    """What the ledger holds for the run's key: spend per row, by request id, and totals."""

    rows: Mapping[str, Sequence[Decimal]]
    totals: Mapping[str, Decimal | None]


@dataclass
class Report:
    served: int
    client_errors: int
    logged: int
    missing: list[str]
    duplicated: int
    # Rows of the key the client got no answer for (a call cut by a fault, still costed).
    logged_unanswered: int
    header_cost: Decimal
    logged_cost: Decimal
    all_rows_cost: Decimal
    differences: dict[str, Decimal | None] = field(default_factory=dict)
    prometheus_partial: bool = False
    faults: list[str] = field(default_factory=list)
    # What the calls without an answer got: HTTP status (0: no response at all) -> count.
    unanswered: dict[int, int] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return len(self.missing)

    @property
    def ok(self) -> bool:
        exact = all(
            d is None or d == 0
            for name, d in self.differences.items()
            if not (name == "prometheus" and self.prometheus_partial)
        )
        return self.lost == 0 and self.duplicated == 0 and exact

    def as_dict(self) -> dict[str, Any]:
        return {
            "served": self.served,
            "client_errors": self.client_errors,
            "unanswered": {str(k): v for k, v in sorted(self.unanswered.items())},
            "logged": self.logged,
            "lost": self.lost,
            "missing": self.missing[:20],
            "duplicated": self.duplicated,
            "logged_unanswered": self.logged_unanswered,
            "header_cost": str(self.header_cost),
            "logged_cost": str(self.logged_cost),
            "differences": {k: None if v is None else str(v) for k, v in self.differences.items()},
            "prometheus_partial": self.prometheus_partial,
            "faults": self.faults,
            "ok": self.ok,
        }

    def render(self) -> str:
        why = ", ".join(
            f"{n} x {'no response' if status == 0 else status}"
            for status, n in sorted(self.unanswered.items())
        )
        lines = [
            f"served      {self.served}  (client saw no answer for {self.client_errors}"
            + (f": {why})" if why else ")"),
            f"logged      {self.logged}  (+{self.logged_unanswered} rows for calls the client "
            "got no answer for)",
            f"missing     {self.lost}"
            + (f"  e.g. {', '.join(self.missing[:5])}" if self.missing else ""),
            f"duplicated  {self.duplicated}",
            f"cost        headers {self.header_cost}  spend rows {self.logged_cost}  "
            f"all rows of the key {self.all_rows_cost}",
        ]
        for name, diff in self.differences.items():
            shown = "n/a" if diff is None else f"{diff:+}"
            note = (
                "  (partial: an ingress restarted)"
                if name == "prometheus" and self.prometheus_partial
                else ""
            )
            lines.append(f"  difference {name:<12} {shown}{note}")
        if self.faults:
            lines.append(f"faults      {'; '.join(self.faults)}")
        lines.append("RECONCILED: exact" if self.ok else "NOT RECONCILED")
        return "\n".join(lines)


def reconcile(
    calls: Sequence[Call],
    ledger: LedgerView,
    prometheus: Decimal | None,
    faults: Iterable[Fault] = (),
) -> Report:
    """Served calls against the ledger's rows and totals, and the spend counter.

    differences: `spend rows` = rows of served calls - their header costs; `key`/`team`/
    `user` totals - every row of the run's key (which also holds costed failures); and
    `prometheus` (rounded to the cent) - every row of the key.
    """
    faults = list(faults)
    served = {c.call_id: c for c in calls if c.served and c.call_id}
    missing = [cid for cid in served if cid not in ledger.rows]
    duplicated = sum(max(0, len(spends) - 1) for spends in ledger.rows.values())
    header_cost = sum((c.cost or Decimal(0) for c in served.values()), Decimal(0))
    logged_cost = sum((ledger.rows[cid][0] for cid in served if cid in ledger.rows), Decimal(0))
    all_rows = sum((sum(s, Decimal(0)) for s in ledger.rows.values()), Decimal(0))
    diffs: dict[str, Decimal | None] = {"spend rows": logged_cost - header_cost}
    for entity in ENTITIES:
        total = ledger.totals.get(entity)
        diffs[f"{entity} total"] = None if total is None else total - all_rows
    diffs["prometheus"] = (
        None if prometheus is None else prometheus.quantize(CENT) - all_rows.quantize(CENT)
    )
    return Report(
        served=len(served),
        client_errors=sum(1 for c in calls if not c.served),
        unanswered=dict(Counter(c.status for c in calls if not c.served)),
        logged=len(served) - len(missing),
        missing=missing,
        duplicated=duplicated,
        logged_unanswered=sum(1 for rid in ledger.rows if rid not in served),
        header_cost=header_cost,
        logged_cost=logged_cost,
        all_rows_cost=all_rows,
        differences=diffs,
        prometheus_partial=any(f.resets_counter for f in faults),
        faults=[f.name for f in faults],
    )


def spend_counter(metrics_text: str, key_hash: str) -> Decimal:
    """The sum of `litellm_spend_metric_total` samples for `key_hash` in one /metrics page."""
    from prometheus_client.parser import text_string_to_metric_families

    total = Decimal(0)
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == SPEND_METRIC and sample.labels.get("hashed_api_key") == key_hash:
                total += Decimal(repr(sample.value))
    return total


# -- reading the stack -------------------------------------------------------------------


async def read_ledger(database_url: str, header: RunHeader) -> LedgerView:
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        rows: dict[str, list[Decimal]] = {}
        for r in await conn.fetch(
            "SELECT request_id, spend FROM ledger.spend_logs WHERE api_key = $1",
            header.key_hash,
        ):
            rows.setdefault(r["request_id"], []).append(Decimal(r["spend"]))
        totals: dict[str, Decimal | None] = {}
        for entity, entity_id in header.entity_ids().items():
            value = await conn.fetchval(
                "SELECT spend FROM ledger.spend_totals WHERE entity = $1 AND entity_id = $2",
                entity,
                entity_id,
            )
            totals[entity] = None if value is None else Decimal(value)
        return LedgerView(rows, totals)
    finally:
        await conn.close()


def read_prometheus(header: RunHeader) -> Decimal | None:
    """The spend counter summed over every ingress replica; None when one does not answer."""
    total = Decimal(0)
    auth = {"Authorization": f"Bearer {header.master_key}"}
    for url in header.ingress_urls:
        try:
            resp = httpx.get(f"{url.rstrip('/')}/metrics", headers=auth, timeout=5)
        except httpx.HTTPError:
            return None
        if resp.status_code != 200:
            return None
        total += spend_counter(resp.text, header.key_hash)
    return total


def collect(record: Path, database_url: str, wait_s: float = 60.0, settle_s: float = 2.0) -> Report:
    """Read the stack until the ledger holds every served call and its totals stop moving
    (or `wait_s` passes), then compare."""
    header, calls, faults = read_record(record)
    served = {c.call_id for c in calls if c.served}
    deadline = time.monotonic() + wait_s
    last: tuple[int, Decimal | None] | None = None
    stable_since = time.monotonic()
    while True:
        ledger = asyncio.run(read_ledger(database_url, header))
        seen = (sum(len(v) for v in ledger.rows.values()), ledger.totals.get("key"))
        if seen != last:
            last, stable_since = seen, time.monotonic()
        complete = served <= set(ledger.rows)
        if (complete and time.monotonic() - stable_since >= settle_s) or (
            time.monotonic() > deadline
        ):
            break
        time.sleep(0.5)
    return reconcile(calls, ledger, read_prometheus(header), faults)


def main(data: Any, record: Path, database_url: str | None, wait_s: float, as_json: bool) -> int:
    url = database_url or os.environ.get("TOLLGATE_DATABASE_URL")
    if not url:
        status = data.read_status() or {}
        url = (status.get("servers") or {}).get("TOLLGATE_DATABASE_URL")
    if not url:
        print(
            "no database: pass --database-url, set TOLLGATE_DATABASE_URL or run it beside "
            "a stack started with `./just up --detach`",
            file=sys.stderr,
        )
        return 2
    report = collect(record, url, wait_s)
    print(json.dumps(report.as_dict(), indent=1) if as_json else report.render())
    return 0 if report.ok else 1


def tally(reports: Iterable[tuple[str, Report]]) -> str:
    """The chaos table: one row per fault."""
    head = f"{'fault':<58}{'served':>8}{'logged':>8}{'lost':>6}{'dup':>5}  cost diff"
    lines = [head, "-" * len(head)]
    for name, r in reports:
        worst = max(
            (
                abs(d)
                for k, d in r.differences.items()
                if d is not None and not (k == "prometheus" and r.prometheus_partial)
            ),
            default=Decimal(0),
        )
        lines.append(f"{name:<58}{r.served:>8}{r.logged:>8}{r.lost:>6}{r.duplicated:>5}  {worst}")
    return "\n".join(lines)


def count_statuses(calls: Iterable[Call]) -> dict[int, int]:
    return dict(Counter(c.status for c in calls))
