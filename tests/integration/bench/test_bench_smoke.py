"""The bench machinery at tiny sizes: every row of the table is produced (or marked skipped)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tollgate_bench.__main__ import write_json
from tollgate_bench.plan import SMOKE
from tollgate_bench.report import expected_keys
from tollgate_bench.runner import Bench, Options
from tollgate_bench.wholebox import SERVERS, SERVICES
from tollgate_devstack.embedded import StackUrls

REPO = Path(__file__).resolve().parents[3]
LITELLM_VENV = REPO / ".bench" / "litellm-venv"


@pytest.mark.parametrize(
    ("tools", "litellm"),
    [
        pytest.param("system", True, id="nginx-wrk-litellm"),
        pytest.param("python", False, id="python-fallbacks"),
    ],
)
async def test_bench_smoke_produces_every_row(
    provisioned: StackUrls, database_url: str, tmp_path: Path, tools: str, litellm: bool
) -> None:
    urls = StackUrls(provisioned.nats_url, database_url, provisioned.redis_url)
    opts = Options(
        plan=SMOKE,
        out=tmp_path,
        litellm=litellm,
        litellm_venv=LITELLM_VENV,
        use_nginx=tools == "system",
        use_wrk=tools == "system",
        pin=False,
        urls=urls,
        say=lambda _msg: None,
    )
    results = await Bench(opts).run()

    keys = expected_keys(SMOKE)
    assert sorted(results.rows) == sorted(keys)
    for key in keys:
        row = results.rows[key]
        if key.startswith("box.cpu."):
            # NATS, PostgreSQL and Redis are the suite's here: counted only when they are
            # this process's children.
            if row.leg in SERVERS:
                assert row.ok or row.status.startswith("not run"), (key, row.status)
            else:
                assert row.ok, (key, row.status)
            if row.ok:
                assert row.cpu_ms_per_request is not None, key
                assert row.cpu_ms_per_request >= 0, key
            continue
        if row.leg == "litellm":
            # Measured when its venv exists, otherwise explicitly marked as skipped.
            assert row.ok or row.status.startswith("skipped"), (key, row.status)
            if not litellm:
                assert row.status.startswith("skipped")
            continue
        assert row.ok, (key, row.status)
        assert row.errors == 0, (key, row.errors)
        if row.bench.startswith(("closed loop", "whole box c=", "fixed rate", "lag", "ledger")):
            assert row.throughput is not None, key
            assert row.throughput > 0, key
        if not key.startswith("ledger"):
            assert row.p50_ms is not None, key
            assert row.p99_ms is not None, key
    assert results.rows["gateway.c1.tollgate"].overhead_ms is not None
    assert results.rows["gateway.c1.tollgate"].rss_mb is not None
    # The whole box: measured beside the same upstream, CPU counted for every service.
    assert results.rows["box.c1.tollgate"].overhead_ms is not None
    assert results.rows["box.c16.tollgate"].cpu_ms_per_request is not None
    for name in SERVICES:
        assert results.rows[f"box.cpu.{name}"].ok, name
    assert results.rows["box.cpu.ingress"].cpu_ms_per_request
    lag = results.rows["box.lag.tollgate"]
    assert lag.requests > 0
    assert "0 rows never seen" in lag.note
    if tools == "python":
        assert results.meta["upstream"] == "python"
        assert results.rows["gateway.c1.direct"].tool == "python"

    table = results.table()
    for key in keys:
        row = results.rows[key]
        assert any(row.bench in line and row.leg in line for line in table.splitlines()), key
    assert "targets:" in results.summary()

    written = json.loads(write_json(results, tmp_path).read_text())
    assert [r["key"] for r in written["rows"]] == keys
    assert {t["name"] for t in written["targets"]} == {t.name for t in results.targets()}
