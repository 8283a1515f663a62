"""Writes audit rows in one multi-row statement; the event id makes redelivery a no-op."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from tollgate_ledger.audit import AuditRow


class AuditProjection:
    def __init__(self, schema: str) -> None:
        self.schema = schema
        self._sql = f"""
            INSERT INTO "{schema}".audit_log (id, updated_at, changed_by, changed_by_api_key,
                action, table_name, object_id, before_value, updated_values)
            SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[],
                $5::text[], $6::text[], $7::text[], $8::jsonb[], $9::jsonb[])
            ON CONFLICT (id) DO NOTHING
            RETURNING id
        """

    async def write(self, conn: asyncpg.Connection, rows: Sequence[AuditRow]) -> int:
        """Insert the rows not yet recorded; returns how many were new."""
        if not rows:
            return 0
        inserted = await conn.fetch(
            self._sql,
            [r.id for r in rows],
            [r.updated_at for r in rows],
            [r.changed_by for r in rows],
            [r.changed_by_api_key for r in rows],
            [r.action for r in rows],
            [r.table_name for r in rows],
            [r.object_id for r in rows],
            [r.before_value for r in rows],
            [r.updated_values for r in rows],
        )
        return len(inserted)
