"""The ledger's Prometheus metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from tollgate_shared import litellm_metrics as lm
from tollgate_shared.kvview import KvView
from tollgate_shared.state import SpendState, spend_kv_key

ROWS_WRITTEN = Counter(
    "tollgate_ledger_rows_written_total", "Rows inserted by the ledger, by table", ["table"]
)
BATCHES = Counter(
    "tollgate_ledger_batches_total",
    "Batches handled, by consumer and outcome (committed, db_error, empty)",
    ["consumer", "outcome"],
)
BATCH_SECONDS = Histogram(
    "tollgate_ledger_batch_seconds",
    "Time from receiving a batch to committing it",
    ["consumer"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
BATCH_SIZE = Histogram(
    "tollgate_ledger_batch_size",
    "Messages per batch",
    ["consumer"],
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2000, 5000),
)
DUPLICATES = Counter(
    "tollgate_ledger_duplicates_total",
    "Events already counted (redelivered or replayed) and skipped",
    ["consumer"],
)
TRACKING_FAILED = Counter(
    "tollgate_ledger_tracking_failed_total",
    "Messages that could not become a ledger record and were terminated",
    ["consumer"],
)
DB_ERRORS = Counter(
    "tollgate_ledger_db_errors_total", "Batches that failed to commit", ["consumer"]
)
PARTITIONS_DROPPED = Counter(
    "tollgate_ledger_partitions_dropped_total", "Daily partitions dropped by retention"
)
RETENTION_DROPPED = Counter(
    "tollgate_ledger_retention_dropped_total",
    "Rows dropped by retention, by table (whole partitions count their rows)",
    ["table"],
)
DEAD_LETTERS = Counter(
    "tollgate_ledger_dead_letters_total",
    "Messages JetStream stopped delivering (max deliveries), recorded for replay",
    ["consumer"],
)
DEAD_LETTERS_REPLAYED = Counter(
    "tollgate_ledger_dead_letters_replayed_total",
    "Dead letters replayed, by outcome",
    ["outcome"],
)


class BudgetGauges:
    """LiteLLM's budget gauges of keys, teams and users (max, remaining, hours to reset),
    computed at scrape time from admin's budgets and the totals this ledger commits to
    `tollgate-spend`: the one owner of these values, however many ingress replicas run."""

    _ENTITIES: tuple[tuple[str, str, str, str], ...] = (
        (
            "key",
            "litellm_api_key_max_budget_metric",
            "litellm_remaining_api_key_budget_metric",
            "litellm_api_key_budget_remaining_hours_metric",
        ),
        (
            "team",
            "litellm_team_max_budget_metric",
            "litellm_remaining_team_budget_metric",
            "litellm_team_budget_remaining_hours_metric",
        ),
        (
            "user",
            "litellm_user_max_budget_metric",
            "litellm_remaining_user_budget_metric",
            "litellm_user_budget_remaining_hours_metric",
        ),
    )

    def __init__(
        self,
        budgets: Any,
        spend: KvView[SpendState],
        options: lm.MetricsOptions,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.budgets = budgets  # BudgetBook: views of keys, teams, users, and reset_at()
        self.spend = spend
        self.options = options
        self.clock = clock

    def _labels(self, entity: str, entity_id: str, state: Any) -> dict[str, str]:
        if entity == "key":
            return {"hashed_api_key": entity_id, "api_key_alias": str(state.key_alias)}
        if entity == "team":
            return {"team": entity_id, "team_alias": str(state.team_alias)}
        return {"user": entity_id}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self.clock()
        views = {"key": self.budgets.keys, "team": self.budgets.teams, "user": self.budgets.users}
        totals = self.spend.items()
        for entity, *names_ in self._ENTITIES:
            specs = [lm.BY_NAME[n] for n in names_]
            chosen = [self.options.labels_of(s) for s in specs]
            families = [
                GaugeMetricFamily(s.name, s.doc, labels=list(labels))
                if labels is not None
                else None
                for s, labels in zip(specs, chosen, strict=True)
            ]
            count = 0
            for entity_id, state in views[entity].items().items():
                if state.max_budget is None:
                    continue
                count += 1
                if count > self.options.max_series:
                    break
                total = totals.get(spend_kv_key(entity, entity_id))
                current = total.current_spend(now) if total is not None else Decimal(0)
                reset = self.budgets.reset_at(entity, entity_id, now)
                values = (
                    float(state.max_budget),
                    float(state.max_budget - current),
                    (reset - now).total_seconds() / 3600 if reset is not None else None,
                )
                v = self._labels(entity, entity_id, state)
                for fam, labels, value in zip(families, chosen, values, strict=True):
                    if fam is not None and labels is not None and value is not None:
                        fam.add_metric([v.get(x, "None") for x in labels], value)
            yield from (f for f in families if f is not None)

    def describe(self) -> list[Any]:
        return []  # collected at scrape time only


_budget_gauges: BudgetGauges | None = None


def install_budget_gauges(
    budgets: Any, spend: KvView[SpendState], options: lm.MetricsOptions
) -> BudgetGauges:
    """Register the budget gauges (replacing those of an earlier app in this process)."""
    global _budget_gauges
    if _budget_gauges is not None:
        REGISTRY.unregister(_budget_gauges)  # type: ignore[arg-type]
    _budget_gauges = BudgetGauges(budgets, spend, options)
    REGISTRY.register(_budget_gauges)  # type: ignore[arg-type]
    return _budget_gauges
