"""Measures `backup` and `restore` on a data folder holding N spend rows (`just backup-bench`).

Builds a data folder with the embedded servers, applies the real migrations,
writes N spend-log rows (with their processed_requests rows, spread over ten
daily partitions), the matching spend totals and N/100 audit rows in SQL,
backs it up, restores it into a fresh folder and compares what a person would
compare: spend total, row counts and the audit log.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from tollgate_devstack import backups
from tollgate_devstack.datadir import DataDir
from tollgate_devstack.embedded import EmbeddedStack

DAYS = 10


def migrate(database_url: str) -> None:
    env = {**os.environ, "TOLLGATE_DATABASE_URL": database_url}
    for service in ("ledger", "admin"):
        subprocess.run(
            [sys.executable, "-m", f"tollgate_{service}", "migrate"],
            env=env,
            check=True,
            capture_output=True,
            timeout=300,
        )


SEED = """
DO $$
DECLARE d date;
BEGIN
  FOR i IN 0..{days} - 1 LOOP
    d := date '2026-01-01' + i;
    EXECUTE format('CREATE TABLE IF NOT EXISTS ledger.%I PARTITION OF ledger.spend_logs
                    FOR VALUES FROM (%L) TO (%L)', 'spend_logs_p' || to_char(d, 'YYYYMMDD'),
                   d::timestamptz, (d + 1)::timestamptz);
    EXECUTE format('CREATE TABLE IF NOT EXISTS ledger.%I PARTITION OF ledger.processed_requests
                    FOR VALUES FROM (%L) TO (%L)',
                   'processed_requests_p' || to_char(d, 'YYYYMMDD'),
                   d::timestamptz, (d + 1)::timestamptz);
  END LOOP;
END $$;
INSERT INTO ledger.spend_logs (request_id, call_type, api_key, spend, total_tokens,
    prompt_tokens, completion_tokens, "startTime", "endTime", model, "user", team_id,
    session_id, status, event_id, metadata, messages, response)
SELECT 'req-' || g, 'acompletion', 'hashed-key-' || (g % 50), (g % 997) * 0.000013,
    30 + g % 400, 10 + g % 200, 20 + g % 200,
    timestamptz '2026-01-01 00:00:00+00' + (g % {days}) * interval '1 day'
        + (g % 86000) * interval '1 second',
    timestamptz '2026-01-01 00:00:01+00' + (g % {days}) * interval '1 day'
        + (g % 86000) * interval '1 second',
    'demo', 'user-' || (g % 20), 'team-' || (g % 5), 'session-' || (g % 10000), 'success',
    'evt-' || g, '{{"tags": ["bench"]}}', '[{{"role": "user", "content": "Hello"}}]',
    '{{"choices": [{{"message": {{"content": "Hi there"}}}}]}}'
FROM generate_series(1, {rows}) AS g;
INSERT INTO ledger.processed_requests (request_id, "startTime", event_id)
SELECT request_id, "startTime", event_id FROM ledger.spend_logs;
INSERT INTO ledger.spend_totals (entity, entity_id, spend)
SELECT 'team', team_id, sum(spend) FROM ledger.spend_logs GROUP BY team_id;
INSERT INTO ledger.audit_log (id, updated_at, changed_by, action, table_name, object_id,
    updated_values)
SELECT 'audit-' || g, timestamptz '2026-01-01 00:00:00+00' + g * interval '1 minute',
    'admin', 'created', 'keys', 'key-' || g, jsonb_build_object('key_alias', 'k' || g)
FROM generate_series(1, greatest({rows} / 100, 1)) AS g;
"""


async def seed(database_url: str, rows: int) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(SEED.format(rows=rows, days=DAYS))
    finally:
        await conn.close()


async def fingerprint(database_url: str) -> dict[str, Any]:
    """What must be identical after a restore: totals, counts, and the whole audit log."""
    conn = await asyncpg.connect(database_url)
    try:
        return {
            "spend_rows": await conn.fetchval("SELECT count(*) FROM ledger.spend_logs"),
            "spend_sum": str(await conn.fetchval("SELECT sum(spend) FROM ledger.spend_logs")),
            "totals": [
                tuple(r)
                for r in await conn.fetch(
                    "SELECT entity, entity_id, spend::text FROM ledger.spend_totals ORDER BY 1, 2"
                )
            ],
            "processed": await conn.fetchval("SELECT count(*) FROM ledger.processed_requests"),
            "audit_md5": await conn.fetchval(
                "SELECT md5(string_agg(a::text, '|' ORDER BY id)) FROM ledger.audit_log a"
            ),
            "audit_rows": await conn.fetchval("SELECT count(*) FROM ledger.audit_log"),
        }
    finally:
        await conn.close()


def measure(rows: int, work: Path) -> dict[str, Any]:
    source, target = DataDir(work / "source"), DataDir(work / "restored")
    archive = work / "backup.tar"
    stack = EmbeddedStack(source.root)
    try:
        urls = stack.start()
        migrate(urls.database_url)
        source.mark()
        started = time.monotonic()
        asyncio.run(seed(urls.database_url, rows))
        seed_s = time.monotonic() - started
        before = asyncio.run(fingerprint(urls.database_url))
    finally:
        stack.stop()
    started = time.monotonic()
    if backups.backup(source, archive) != 0:
        raise RuntimeError("backup failed")
    backup_s = time.monotonic() - started
    started = time.monotonic()
    if backups.restore(target, archive) != 0:
        raise RuntimeError("restore failed")
    restore_s = time.monotonic() - started
    check = EmbeddedStack(target.root)
    try:
        after = asyncio.run(fingerprint(check.start(redis_url="redis://unused").database_url))
    finally:
        check.stop()
    return {
        "rows": rows,
        "seed_s": round(seed_s, 1),
        "backup_s": round(backup_s, 1),
        "backup_mb": round(archive.stat().st_size / 1e6, 1),
        "restore_s": round(restore_s, 1),
        "identical": before == after,
        "spend_sum": before["spend_sum"],
        "audit_rows": before["audit_rows"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tollgate_devstack.backup_bench")
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tollgate-backup-bench-") as tmp:
        result = measure(args.rows, Path(tmp))
    print(json.dumps(result, indent=1))
    return 0 if result["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
