"""Applies a service's numbered plain-SQL migrations once each, under an advisory lock.

Migrations are forward-only. A database that already carries a migration this release
does not know was written by a newer release: the runner refuses it (`SchemaTooNewError`)
rather than run old code against a schema it does not understand.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class SchemaTooNewError(RuntimeError):
    """The database was migrated by a newer release than this one."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def discover(directory: Path) -> list[Migration]:
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise ValueError(f"migration file {path.name} must be named NNNN_name.sql")
        found.append(Migration(int(m.group(1)), m.group(2), path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration numbers in {directory}")
    return found


async def apply_migrations(
    conn: asyncpg.Connection, schema: str, directory: Path, *, upto: int | None = None
) -> list[int]:
    """Apply the pending migrations of `schema` (those numbered up to `upto`, when given);
    returns the versions applied. Raises `SchemaTooNewError` on a newer database."""
    migrations = [m for m in discover(directory) if upto is None or m.version <= upto]
    known = {m.version for m in discover(directory)}
    # One lock per schema: replicas starting together apply each file once.
    await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"tollgate-migrate:{schema}")
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations ('
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {
            r["version"]
            for r in await conn.fetch(f'SELECT version FROM "{schema}".schema_migrations')
        }
        unknown = sorted(done - known)
        if unknown:
            raise SchemaTooNewError(
                f"schema {schema!r} carries migration(s) {', '.join(f'{v:04d}' for v in unknown)}"
                f" that this release does not have (it knows up to {max(known, default=0):04d}):"
                " the database was written by a newer Tollgate. Run that version, or restore"
                " a backup taken before the upgrade; migrations only go forward."
            )
        applied: list[int] = []
        for mig in migrations:
            if mig.version in done:
                continue
            async with conn.transaction():
                await conn.execute(f'SET LOCAL search_path TO "{schema}", public')
                await conn.execute(mig.sql)
                await conn.execute(
                    f'INSERT INTO "{schema}".schema_migrations (version, name) VALUES ($1, $2)',
                    mig.version,
                    mig.name,
                )
            log.info("migrated %s to %04d_%s", schema, mig.version, mig.name)
            applied.append(mig.version)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", f"tollgate-migrate:{schema}")


async def migrate_url(
    database_url: str, schema: str, directory: Path, *, upto: int | None = None
) -> list[int]:
    conn = await asyncpg.connect(database_url)
    try:
        return await apply_migrations(conn, schema, directory, upto=upto)
    finally:
        await conn.close()
