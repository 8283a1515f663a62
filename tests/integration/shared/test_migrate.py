"""The migration runner on a real PostgreSQL: forward only, up to a version, and a database
written by a newer release refused with a clear message."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from tollgate_shared.migrate import SchemaTooNewError, apply_migrations


def release(tmp_path: Path, name: str, files: dict[str, str]) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for file, sql in files.items():
        (folder / file).write_text(sql)
    return folder


V1 = {"0001_things.sql": "CREATE TABLE things (id int PRIMARY KEY);"}
V2 = {**V1, "0002_colour.sql": "ALTER TABLE things ADD COLUMN colour text;"}


async def test_newer_database_is_refused(database_url: str, tmp_path: Path) -> None:
    old, new = release(tmp_path, "old", V1), release(tmp_path, "new", V2)
    conn = await asyncpg.connect(database_url)
    try:
        assert await apply_migrations(conn, "svc", new, upto=1) == [1]
        assert await apply_migrations(conn, "svc", new) == [2]
        assert await apply_migrations(conn, "svc", new) == []
        with pytest.raises(SchemaTooNewError, match=r"0002 .*newer Tollgate") as refused:
            await apply_migrations(conn, "svc", old)
        assert "knows up to 0001" in str(refused.value)
        # Refusing changed nothing, and released the lock: the newer release still runs.
        assert await apply_migrations(conn, "svc", new) == []
        assert await conn.fetchval("SELECT count(*) FROM svc.schema_migrations") == 2
    finally:
        await conn.close()
