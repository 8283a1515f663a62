"""Backup one data folder, restore into a fresh one: same spend, audit, streams; upgrade guard."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tollgate_devstack import backup_bench, backups
from tollgate_devstack.datadir import DataDir
from tollgate_devstack.embedded import EmbeddedStack
from tollgate_shared import names
from tollgate_shared.provision import provision_url
from tollgate_shared.publishing import connect_nats

URL_VARS = ("TOLLGATE_NATS_URL", "TOLLGATE_DATABASE_URL", "TOLLGATE_REDIS_URL")


@pytest.fixture
def root() -> Iterator[Path]:
    """Outside pytest's 0700 temp root: PostgreSQL runs as another user and must reach it."""
    folder = Path(tempfile.mkdtemp(prefix="tollgate-it-backup-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def _fill_jetstream(nats_url: str) -> None:
    await provision_url(nats_url)
    nc = await connect_nats(nats_url, "backup-test")
    try:
        js = nc.jetstream()
        kv = await js.key_value(names.KV_SPEND)
        await kv.put("team.backup", b'{"spend": "1.5"}')
    finally:
        await nc.drain()


async def _jetstream_state(nats_url: str) -> tuple[dict[str, int], bytes | None]:
    nc = await connect_nats(nats_url, "backup-test")
    try:
        js = nc.jetstream()
        counts = {s.config.name: s.state.messages for s in await js.streams_info()}
        entry = await (await js.key_value(names.KV_SPEND)).get("team.backup")
        return {k: v for k, v in counts.items() if k}, entry.value
    finally:
        await nc.drain()


def test_backup_restores_into_a_fresh_folder_with_identical_totals_and_audit(root: Path) -> None:
    source, target = DataDir(root / "source"), DataDir(root / "fresh")
    archive = root / "backup.tar"
    stack = EmbeddedStack(source.root)
    try:
        urls = stack.start(redis_url="redis://unused")
        asyncio.run(_fill_jetstream(urls.nats_url))
        backup_bench.migrate(urls.database_url)
        source.mark()
        asyncio.run(backup_bench.seed(urls.database_url, 2000))
        before = asyncio.run(backup_bench.fingerprint(urls.database_url))
        js_before = asyncio.run(_jetstream_state(urls.nats_url))
    finally:
        stack.stop()

    assert backups.backup(source, archive) == 0
    # Restoring over existing data is refused: nothing is overwritten.
    assert backups.restore(source, archive) == 1
    assert backups.restore(target, archive) == 0
    assert target.written_by() == source.written_by()

    check = EmbeddedStack(target.root)
    try:
        urls = check.start(redis_url="redis://unused")
        after = asyncio.run(backup_bench.fingerprint(urls.database_url))
        js_after = asyncio.run(_jetstream_state(urls.nats_url))
    finally:
        check.stop()
    assert before["spend_rows"] == 2000
    assert before["audit_rows"] == 20
    assert after == before
    assert js_after == js_before
    assert js_after[1] == b'{"spend": "1.5"}'


def test_up_refuses_a_data_folder_written_by_a_newer_version(root: Path) -> None:
    data = DataDir(root / "data")
    data.mark("999.0.0")
    env = {k: v for k, v in os.environ.items() if k not in URL_VARS}
    done = subprocess.run(
        [sys.executable, "-m", "tollgate_devstack", "--data-dir", str(data.root), "up"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "was written by Tollgate 999.0.0, newer than this Tollgate" in done.stderr
    assert "Nothing was started" in done.stderr
    assert not (data.root / "nats").exists()
    assert not (data.root / "pg").exists()
    assert json.loads(data.marker.read_text())["tollgate_version"] == "999.0.0"
