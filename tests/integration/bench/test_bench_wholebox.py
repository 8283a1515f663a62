"""The whole-box bench at a tiny size: every service starts, logs the calls, and is counted."""

from __future__ import annotations

from pathlib import Path

from tollgate_bench.wholebox import SERVICES, Box, drive, table, warm
from tollgate_devstack.embedded import StackUrls


async def test_wholebox_counts_cpu_per_call_of_every_service(
    provisioned: StackUrls, database_url: str, tmp_path: Path
) -> None:
    urls = StackUrls(provisioned.nats_url, database_url, provisioned.redis_url)
    box = Box(tmp_path / "box", urls=urls, say=lambda _msg: None)
    try:
        await box.start()
        warm(box.ingress_url, 5)
        run = await drive(box, concurrency=2, duration_s=1, settle_s=1.0)
    finally:
        box.stop()

    assert run.result.requests > 0
    assert run.result.errors == 0
    for name in SERVICES:
        assert run.cpu_ms[name] >= 0, name
    # The consumers did work for the calls (the alerter and exporter are not idle).
    assert run.cpu_ms["ingress"] > 0
    assert run.cpu_ms["total"] >= sum(run.cpu_ms[name] for name in SERVICES)
    lines = list(table([run]))
    assert any(line.startswith("total") for line in lines)
