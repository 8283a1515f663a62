"""docs/metrics.md is generated from tollgate_shared.litellm_metrics (CATALOG and
NOT_APPLICABLE) and must be current: `python tests/unit/infra/test_metrics_doc.py` rewrites it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tollgate_shared.litellm_metrics import CATALOG, NOT_APPLICABLE

pytestmark = pytest.mark.unit

DOC = Path(__file__).resolve().parents[3] / "docs" / "metrics.md"

HEAD = """# LiteLLM's Prometheus metrics in Tollgate

Generated from `tollgate_shared.litellm_metrics` (`CATALOG`, `NOT_APPLICABLE`) by
`python tests/unit/infra/test_metrics_doc.py`; a unit test fails when this page is stale.

Every family on LiteLLM's Prometheus page, with LiteLLM's name, type, labels and buckets.
Request-level families are exported by the ingress replica that served the call (Prometheus
sums the replicas); budget gauges by the ledger, which owns the totals, so two ingress
replicas never disagree about a remaining budget. Request-level families also carry the
labels of `custom_prometheus_metadata_labels` (`metadata.environment` becomes
`metadata_environment`) and `custom_prometheus_tags` (`tag_<name>="true"|"false"`).
`end_user` is `"None"` unless `enable_end_user_cost_tracking_prometheus_only` is on;
`prometheus_metrics_config` chooses families and labels; past
`prometheus_max_series_per_metric` (default 20,000 series as Prometheus counts them,
each histogram bucket one) new label sets are dropped and counted in
`tollgate_metric_series_dropped_total{metric}`.

Counters are exposed with prometheus_client's `_total` suffix, as LiteLLM's are.
`litellm_remaining_requests` / `litellm_remaining_tokens` are the names LiteLLM registers
(its attribute names end in `_metric`; `prometheus_metrics_config` accepts either).

## Several ingress workers (`TOLLGATE_INGRESS_WORKERS`)

With N > 1 worker processes on one port, ingress runs prometheus_client's multiprocess
mode: each worker writes its samples to memory-mapped files in one directory
(`PROMETHEUS_MULTIPROC_DIR`, set by the supervisor), and a scrape of `/metrics`, whichever
worker answers it, reads them all. Counters and histograms are the sum over the workers,
a dead or restarted worker's counts included (totals never go down). Each ingress gauge
says below how the workers' values combine: `livemax` is the maximum over the running
workers (a deployment's state is its worst in any worker), `livemostrecent` the value
most recently set by a running worker; `tollgate_spool_depth` and
`tollgate_publish_queue_depth` are summed over the running workers. In this mode no
`_created` samples and no `process_*` / `python_*` collectors are exported, and
`prometheus_max_series_per_metric` bounds each worker, so the sum may expose up to N
times it. Why this and not a per-worker scrape: services/ingress/README.md, "Workers".

"""


def render() -> str:
    lines = [HEAD, "## Exposed\n", "| metric | type | exported by | labels |", "|---|---|---|---|"]
    for spec in CATALOG:
        extra = " + custom labels" if spec.per_request else ""
        buckets = ", default buckets" if spec.buckets == "default" else ""
        if spec.kind == "gauge" and spec.owner == "ingress":
            buckets = f", workers: `{spec.workers}`"
        labels = ", ".join(f"`{x}`" for x in spec.labels)
        lines.append(f"| `{spec.name}` | {spec.kind}{buckets} | {spec.owner} | {labels}{extra} |")
    lines += ["", "## Not applicable\n", "| metric | why |", "|---|---|"]
    for name, why in NOT_APPLICABLE.items():
        lines.append(f"| `{name}` | {why} |")
    return "\n".join(lines) + "\n"


def test_metrics_doc_is_current() -> None:
    assert DOC.read_text() == render(), f"{DOC} is stale: python {__file__}"


def test_every_family_is_listed_once() -> None:
    exposed = {s.name for s in CATALOG}
    assert len(exposed) == len(CATALOG)
    assert not exposed & set(NOT_APPLICABLE)


if __name__ == "__main__":
    DOC.write_text(render())
    sys.exit(0)
