"""The results: one row per measured leg, the comparisons, the targets, a table and JSON."""

from __future__ import annotations

import json
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tollgate_bench.load import LoadResult
from tollgate_bench.plan import FULL, Plan
from tollgate_bench.wholebox import COUNTED

LEGS = ("direct", "tollgate", "litellm")
# The whole box's processes whose CPU per logged call gets a row, then their sum.
BOX_PROCESSES = (*COUNTED, "total")


@dataclass
class Row:
    key: str  # stable id, e.g. "gateway.c16.tollgate"
    bench: str  # what is measured, e.g. "closed loop c=16"
    leg: str
    status: str = "ok"  # "ok", "skipped: <why>" or "not run: <why>"
    unit: str = "req/s"
    throughput: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    overhead_ms: float | None = None  # p50 minus the direct leg's p50
    errors: int | None = None
    rss_mb: float | None = None
    cpu_ms_per_request: float | None = None  # the server's CPU time per request
    runs: int = 0
    requests: int = 0
    tool: str = ""
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def expected_keys(plan: Plan) -> list[str]:
    """Every row the table must have, measured or explicitly marked as skipped."""
    keys = [f"gateway.c{c}.{leg}" for c in plan.concurrencies for leg in LEGS]
    keys += [f"gateway.rate.{leg}" for leg in LEGS]
    keys += [f"stream.ttft.{leg}" for leg in LEGS]
    keys += [f"box.c{c}.{leg}" for c in plan.concurrencies for leg in LEGS]
    keys += [f"box.cpu.{name}" for name in BOX_PROCESSES]
    keys += ["box.lag.tollgate"]
    keys += ["ledger.ingest.ledger", "ledger.ingest.copy"]
    return keys


def from_runs(row: Row, runs: list[LoadResult]) -> Row:
    """Medians over repeated runs (the machine is noisy); errors and requests are summed."""
    if not runs:
        return row

    def med(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return statistics.median(present) if present else None

    row.throughput = med([r.rps for r in runs])
    row.p50_ms = med([r.p50_ms for r in runs])
    row.p95_ms = med([r.p95_ms for r in runs])
    row.p99_ms = med([r.p99_ms for r in runs])
    row.cpu_ms_per_request = med([r.cpu_ms_per_request for r in runs])
    row.errors = sum(r.errors for r in runs)
    row.requests = sum(r.requests for r in runs)
    row.runs = len(runs)
    row.tool = runs[0].tool
    return row


@dataclass
class Target:
    name: str
    goal: str
    value: str
    met: bool | None  # None: could not be measured


@dataclass
class Results:
    plan: Plan
    meta: dict[str, Any]
    rows: dict[str, Row] = field(default_factory=dict)

    def add(self, row: Row) -> Row:
        self.rows[row.key] = row
        return row

    def mark_missing(self, status: str) -> None:
        """Rows not produced (a phase failed or was skipped) still appear, with why."""
        for key in expected_keys(self.plan):
            if key not in self.rows:
                parts = key.split(".")
                self.rows[key] = Row(key, f"{parts[0]} {parts[1]}", parts[2], status=status)

    def get(self, key: str) -> Row | None:
        row = self.rows.get(key)
        return row if row is not None and row.ok else None

    # -- comparisons --------------------------------------------------------------
    def ratios(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for c in self.plan.concurrencies:
            tg, ll = self.get(f"gateway.c{c}.tollgate"), self.get(f"gateway.c{c}.litellm")
            out[f"throughput_c{c}_tollgate_over_litellm"] = _div(
                tg.throughput if tg else None, ll.throughput if ll else None
            )
            out[f"overhead_p50_c{c}_litellm_over_tollgate"] = _div(
                ll.overhead_ms if ll else None, tg.overhead_ms if tg else None
            )
        for c in self.plan.concurrencies:
            tg, ll = self.get(f"box.c{c}.tollgate"), self.get(f"box.c{c}.litellm")
            out[f"box_throughput_c{c}_tollgate_over_litellm"] = _div(
                tg.throughput if tg else None, ll.throughput if ll else None
            )
        led, cp = self.get("ledger.ingest.ledger"), self.get("ledger.ingest.copy")
        out["ledger_over_copy"] = _div(
            led.throughput if led else None, cp.throughput if cp else None
        )
        return out

    def targets(self) -> list[Target]:
        ratios = self.ratios()
        c1, cmax = self.plan.concurrencies[0], self.plan.concurrencies[-1]
        tg1 = self.get(f"gateway.c{c1}.tollgate")
        box1 = self.get(f"box.c{c1}.tollgate")
        cpu_total, cpu_alerter = self.get("box.cpu.total"), self.get("box.cpu.alerter")
        lag = self.get("box.lag.tollgate")
        ratio = ratios.get(f"throughput_c{cmax}_tollgate_over_litellm")
        box_ratio = ratios.get(f"box_throughput_c{cmax}_tollgate_over_litellm")
        ledger = ratios.get("ledger_over_copy")
        tollgate_rows = [r for r in self.rows.values() if r.ok and r.leg in ("tollgate", "ledger")]
        errors = sum(r.errors or 0 for r in tollgate_rows)
        out = [
            _at_most(
                f"pinned ingress: p50 overhead at c={c1}",
                tg1.overhead_ms if tg1 else None,
                1.0,
                " ms",
                3,
            ),
            _at_least(
                f"pinned: throughput at c={cmax}, Tollgate / LiteLLM (logging on)",
                ratio,
                5.0,
                "x",
                2,
            ),
            _at_least(
                f"whole box: throughput at c={cmax}, Tollgate / LiteLLM (both unpinned)",
                box_ratio,
                20.0,
                "x",
                2,
            ),
            _at_most(
                f"whole box: p50 overhead over direct at c={c1}",
                box1.overhead_ms if box1 else None,
                1.0,
                " ms",
                3,
            ),
            _at_most(f"whole box: p99 at c={c1}", box1.p99_ms if box1 else None, 5.0, " ms", 2),
            _at_most(
                "whole box: CPU per logged call, all processes",
                cpu_total.cpu_ms_per_request if cpu_total else None,
                0.5,
                " ms",
                3,
            ),
            _at_most(
                "whole box: CPU per logged call, alerter",
                cpu_alerter.cpu_ms_per_request if cpu_alerter else None,
                0.05,
                " ms",
                3,
            ),
            Target(
                "errors through Tollgate (lag: spend rows never seen included)",
                "0",
                str(errors),
                None if not tollgate_rows else errors == 0,
            ),
            _at_least("ledger ingest / raw COPY", ledger, 0.5, "", 3),
            Target(
                f"whole box: lag p99 at {self.plan.lag_rps:,} req/s "
                f"for {self.plan.lag_duration_s:g} s",
                "< 1000 ms",
                _fmt(lag.p99_ms if lag else None, " ms", 1),
                None if lag is None or lag.p99_ms is None else lag.p99_ms < 1000,
            ),
        ]
        if (self.plan.lag_rps, self.plan.lag_duration_s) != (FULL.lag_rps, FULL.lag_duration_s):
            out[-1].goal += (
                f" (the target is set at {FULL.lag_rps:,} req/s for "
                f"{FULL.lag_duration_s / 60:g} minutes: run `just bench`)"
            )
        return out

    # -- output -------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "plan": asdict(self.plan),
            "rows": [asdict(r) for r in self.ordered()],
            "ratios": self.ratios(),
            "targets": [asdict(t) for t in self.targets()],
        }

    def ordered(self) -> list[Row]:
        keys = expected_keys(self.plan)
        known = [self.rows[k] for k in keys if k in self.rows]
        return known + [r for k, r in self.rows.items() if k not in keys]

    def table(self) -> str:
        head = (
            "bench", "leg", "throughput", "p50 ms", "p95 ms", "p99 ms",
            "+p50 vs direct", "errors", "CPU ms/req", "RSS MB", "runs", "note",
        )  # fmt: skip
        lines = [head]
        for r in self.ordered():
            if not r.ok:
                lines.append(
                    (r.bench, r.leg, "-", "-", "-", "-", "-", "-", "-", "-", "0", r.status)
                )
                continue
            lines.append(
                (
                    r.bench,
                    r.leg,
                    _fmt(r.throughput, f" {r.unit}", 0),
                    _fmt(r.p50_ms, "", 2),
                    _fmt(r.p95_ms, "", 2),
                    _fmt(r.p99_ms, "", 2),
                    _fmt(r.overhead_ms, "", 2, signed=True),
                    "-" if r.errors is None else str(r.errors),
                    _fmt(r.cpu_ms_per_request, "", 3),
                    _fmt(r.rss_mb, "", 0),
                    str(r.runs),
                    r.note,
                )
            )
        widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
        out = []
        for i, line in enumerate(lines):
            out.append("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(line)).rstrip())
            if i == 0:
                out.append("  ".join("-" * w for w in widths))
        return "\n".join(out)

    def summary(self) -> str:
        r = self.ratios()
        lines = []
        for c in self.plan.concurrencies:
            lines.append(
                f"Tollgate / LiteLLM throughput at c={c}: "
                f"{_fmt(r.get(f'throughput_c{c}_tollgate_over_litellm'), 'x', 2)}"
            )
        for c in self.plan.concurrencies:
            tg, ll = self.get(f"gateway.c{c}.tollgate"), self.get(f"gateway.c{c}.litellm")
            lines.append(
                f"p50 overhead over direct at c={c}: Tollgate "
                f"{_fmt(tg.overhead_ms if tg else None, ' ms', 2)}, LiteLLM "
                f"{_fmt(ll.overhead_ms if ll else None, ' ms', 2)}"
            )
        direct = self.get(f"gateway.c{self.plan.concurrencies[-1]}.direct")
        if direct:
            lines.append(
                f"upstream alone ({direct.note or direct.tool}) at "
                f"c={self.plan.concurrencies[-1]}: {_fmt(direct.throughput, ' req/s', 0)}"
            )
        for c in self.plan.concurrencies:
            tg, ll = self.get(f"box.c{c}.tollgate"), self.get(f"box.c{c}.litellm")
            lines.append(
                f"whole box (unpinned) at c={c}: Tollgate / LiteLLM throughput "
                f"{_fmt(r.get(f'box_throughput_c{c}_tollgate_over_litellm'), 'x', 2)}; "
                f"p50 overhead over direct: Tollgate {_fmt(tg.overhead_ms if tg else None, ' ms')}"
                f", LiteLLM {_fmt(ll.overhead_ms if ll else None, ' ms')}"
            )
        cpu = [(n, self.get(f"box.cpu.{n}")) for n in BOX_PROCESSES]
        if any(row for _n, row in cpu):
            per = ", ".join(
                f"{n} {_fmt(row.cpu_ms_per_request, '', 3)}" for n, row in cpu if row is not None
            )
            lines.append(
                f"whole box CPU ms per logged call at c={self.plan.concurrencies[-1]}: {per}"
            )
        lag = self.get("box.lag.tollgate")
        if lag:
            lines.append(
                f"lag at {self.plan.lag_rps:,} req/s (whole box): p50 {_fmt(lag.p50_ms, ' ms', 1)},"
                f" p95 {_fmt(lag.p95_ms, ' ms', 1)}, p99 {_fmt(lag.p99_ms, ' ms', 1)}; {lag.note}"
            )
        led, cp = self.get("ledger.ingest.ledger"), self.get("ledger.ingest.copy")
        lines.append(
            f"ledger ingest: {_fmt(led.throughput if led else None, ' events/s', 0)} against "
            f"raw COPY {_fmt(cp.throughput if cp else None, ' rows/s', 0)} "
            f"(ratio {_fmt(r.get('ledger_over_copy'), '', 3)})"
        )
        lines.append("")
        lines.append("targets:")
        for t in self.targets():
            verdict = "n/a " if t.met is None else ("met " if t.met else "MISS")
            lines.append(f"  [{verdict}] {t.name}: {t.value} (goal {t.goal})")
        return "\n".join(lines)


def _at_most(name: str, value: float | None, limit: float, unit: str, digits: int) -> Target:
    goal = f"<= {limit:g}{unit}"
    return Target(name, goal, _fmt(value, unit, digits), None if value is None else value <= limit)


def _at_least(name: str, value: float | None, floor: float, unit: str, digits: int) -> Target:
    goal = f">= {floor:g}{unit}"
    return Target(name, goal, _fmt(value, unit, digits), None if value is None else value >= floor)


def save_json(data: dict[str, Any], out: Path, name: str) -> Path:
    """`<out>/<name>.json` (the latest) plus a timestamped copy in `<out>/history/`."""
    text = json.dumps(data, indent=2, default=str)
    latest = out / f"{name}.json"
    latest.write_text(text)
    history = out / "history"
    history.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (history / f"{name}-{stamp}.json").write_text(text)
    return latest


def _div(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _fmt(v: float | None, unit: str = "", digits: int = 2, signed: bool = False) -> str:
    if v is None:
        return "-"
    sign = "+" if signed else ""
    return f"{v:{sign},.{digits}f}{unit}"


async def interleaved(
    legs: dict[str, Callable[[], Awaitable[float]]], rounds: int
) -> dict[str, list[float]]:
    """Each leg's figure per round, the legs alternating within a round, so all of them
    see the same noise on a shared machine."""
    seen: dict[str, list[float]] = {name: [] for name in legs}
    for _ in range(rounds):
        for name, leg in legs.items():
            seen[name].append(await leg())
    return seen


def medians_against_first(seen: dict[str, list[float]], unit: str, digits: int) -> list[str]:
    """One line per leg: its median, its runs and its ratio to the first leg's median."""
    base = statistics.median(next(iter(seen.values())))
    lines = []
    for name, values in seen.items():
        med = statistics.median(values)
        runs = ", ".join(f"{v:.{digits}f}" for v in values)
        lines.append(
            f"  {name:20s} median {med:7.{digits}f} {unit}  ({runs})  ratio {med / base:.2f}"
        )
    return lines
