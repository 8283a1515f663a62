"""The ledger's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000),
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
