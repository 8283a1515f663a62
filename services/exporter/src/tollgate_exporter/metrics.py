"""The exporter's Prometheus metrics (labels `sink`, `destination`: a label without secrets)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

_LABELS = ["sink", "destination"]
EXPORTED = Counter("tollgate_exporter_exported_total", "Events a destination accepted", _LABELS)
FAILED = Counter(
    "tollgate_exporter_failed_total", "Delivery attempts (batches) that failed", _LABELS
)
RETRIED = Counter(
    "tollgate_exporter_retried_total", "Batch attempts repeated after a failure", _LABELS
)
DEAD_LETTERED = Counter(
    "tollgate_exporter_dead_lettered_total",
    "Events given up on for a destination and published to the dead-letter stream",
    _LABELS,
)
LAG = Gauge(
    "tollgate_exporter_lag_seconds",
    "Age, when accepted, of the oldest event in a destination's last delivered batch",
    _LABELS,
)
QUEUE_DEPTH = Gauge("tollgate_exporter_queue_depth", "Events waiting for a destination", _LABELS)
UNROUTABLE = Counter(
    "tollgate_exporter_unroutable_total",
    "Events whose configured callback could not be delivered (misconfigured or unknown)",
    ["callback"],
)
