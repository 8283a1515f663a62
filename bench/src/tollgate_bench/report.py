"""The results: one row per measured leg, the comparisons, the targets, a table and JSON."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from tollgate_bench.load import LoadResult
from tollgate_bench.plan import Plan

LEGS = ("direct", "tollgate", "litellm")


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
    keys += ["ledger.ingest.ledger", "ledger.ingest.copy", "lag.e2e.tollgate"]
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
        led, cp = self.get("ledger.ingest.ledger"), self.get("ledger.ingest.copy")
        out["ledger_over_copy"] = _div(
            led.throughput if led else None, cp.throughput if cp else None
        )
        return out

    def targets(self) -> list[Target]:
        ratios = self.ratios()
        c1, cmax = self.plan.concurrencies[0], self.plan.concurrencies[-1]
        tg1 = self.get(f"gateway.c{c1}.tollgate")
        lag = self.get("lag.e2e.tollgate")
        ratio = ratios.get(f"throughput_c{cmax}_tollgate_over_litellm")
        ledger = ratios.get("ledger_over_copy")
        tollgate_rows = [r for r in self.rows.values() if r.ok and r.leg in ("tollgate", "ledger")]
        errors = sum(r.errors or 0 for r in tollgate_rows)
        out = [
            Target(
                f"ingress p50 overhead at c={c1}",
                "<= 1 ms",
                _fmt(tg1.overhead_ms if tg1 else None, " ms", 3),
                None if tg1 is None or tg1.overhead_ms is None else tg1.overhead_ms <= 1.0,
            ),
            Target(
                f"throughput at c={cmax}, Tollgate / LiteLLM (logging on)",
                ">= 5x",
                _fmt(ratio, "x", 2),
                None if ratio is None else ratio >= 5.0,
            ),
            Target(
                "errors through Tollgate",
                "0",
                str(errors),
                None if not tollgate_rows else errors == 0,
            ),
            Target(
                "ledger ingest / raw COPY",
                ">= 0.5",
                _fmt(ledger, "", 3),
                None if ledger is None else ledger >= 0.5,
            ),
            Target(
                f"lag p99 at {self.plan.lag_rps} req/s",
                "< 1000 ms",
                _fmt(lag.p99_ms if lag else None, " ms", 1),
                None if lag is None or lag.p99_ms is None else lag.p99_ms < 1000,
            ),
        ]
        if self.plan.lag_rps != 200:
            out[-1].goal += " (the target is set at 200 req/s: run `just bench`)"
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


def _div(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _fmt(v: float | None, unit: str = "", digits: int = 2, signed: bool = False) -> str:
    if v is None:
        return "-"
    sign = "+" if signed else ""
    return f"{v:{sign},.{digits}f}{unit}"
