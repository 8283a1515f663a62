"""Several worker processes of one service in prometheus_client's multiprocess mode:
`/metrics` on any of them sums counters and histograms over all workers (a dead worker's
counts included), takes the worst deployment state of the running ones, and exposes no
series the ceiling's bookkeeping made up."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client.multiprocess import mark_process_dead
from prometheus_client.parser import text_string_to_metric_families

from tollgate_shared import litellm_metrics as lm
from tollgate_shared.runtime import METRICS_DIR_ENV
from tollgate_shared.web import exposition

pytestmark = pytest.mark.unit

# One worker: `calls` calls recorded, its view of the deployment's state, then its pid.
WORKER = textwrap.dedent(
    """
    import os, sys
    from prometheus_client import CollectorRegistry
    from tollgate_shared import litellm_metrics as lm
    from tollgate_shared.publishing import SPOOL_DEPTH

    calls, state = int(sys.argv[1]), int(sys.argv[2])
    m = lm.Metrics(lm.MetricsOptions(max_series=200), "ingress", CollectorRegistry())
    v = {n: "x" for spec in lm.CATALOG for n in spec.labels}
    for i in range(calls):
        m["litellm_proxy_total_requests_metric"].of({**v, "status_code": "200"}).inc()
        m["litellm_request_total_latency_metric"].of(v).observe(0.2 * (i + 1))
    m["litellm_deployment_state"].of(v).set(state)
    SPOOL_DEPTH.set(calls)
    print(os.getpid())
    """
)


def _worker(directory: Path, calls: int, state: int) -> int:
    out = subprocess.run(
        [sys.executable, "-c", WORKER, str(calls), str(state)],
        env={"PATH": "", METRICS_DIR_ENV: str(directory)},
        capture_output=True,
        check=True,
        text=True,
    )
    return int(out.stdout.split()[-1])


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def test_the_workers_metrics_add_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _worker(tmp_path, 3, 0)
    second = _worker(tmp_path, 4, 2)
    monkeypatch.setenv(METRICS_DIR_ENV, str(tmp_path))

    got = _samples(exposition().decode())

    [(_, total)] = got["litellm_proxy_total_requests_metric_total"]
    assert total == 7
    [(_, count)] = got["litellm_request_total_latency_metric_count"]
    assert count == 7
    buckets = {labels["le"]: v for labels, v in got["litellm_request_total_latency_metric_bucket"]}
    assert buckets["0.5"] == 4  # 0.2, 0.4 of each worker
    assert buckets["+Inf"] == 7
    [(labels, state)] = got["litellm_deployment_state"]
    assert state == 2  # the worst of the running workers
    assert "pid" not in labels
    [(_, depth)] = got["tollgate_spool_depth"]
    assert depth == 7  # each worker's own spool, summed
    # The ceiling counts a label set's cost without creating a series of empty labels.
    every = [labels for series in got.values() for labels, _ in series]
    assert not any(labels and set(labels.values()) <= {""} for labels in every)

    # A worker gone: its gauges leave, its counts stay (a total never goes down).
    mark_process_dead(second, str(tmp_path))
    got = _samples(exposition().decode())
    assert got["litellm_proxy_total_requests_metric_total"][0][1] == 7
    assert got["litellm_deployment_state"][0][1] == 0
    assert got["tollgate_spool_depth"][0][1] == 3
    assert first != second


@pytest.mark.parametrize(
    ("kind", "buckets", "samples"),
    [
        ("counter", (), 1),
        ("gauge", (), 1),
        ("histogram", lm.LATENCY_BUCKETS, len(lm.LATENCY_BUCKETS) + 3),
        ("histogram", (0.5, float("inf")), 4),
    ],
)
def test_a_label_sets_cost_among_workers_is_what_is_exposed(
    kind: lm.Kind, buckets: tuple[float, ...], samples: int
) -> None:
    # Each bucket (+Inf included), `_sum` and `_count`; no `_created` in multiprocess mode.
    assert lm.multiprocess_samples_per_label_set(kind, buckets) == samples
