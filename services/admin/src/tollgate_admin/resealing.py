"""Salt-key rotation: every sealed credential admin stores, opened with the old key and
sealed again with the new one, in one transaction (`python -m tollgate_admin reseal`)."""

from __future__ import annotations

from typing import Any

import asyncpg

from tollgate_shared import names
from tollgate_shared.sealing import SEALED_PREFIX, Sealer, SealError

# Where admin keeps sealed values: (table, key column, JSON columns that may hold them).
SEALED_COLUMNS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("keys", "token", ("metadata",)),
    ("teams", "team_id", ("metadata",)),
    ("users", "user_id", ("metadata",)),
    ("models", "model_id", ("litellm_params", "model_info")),
    ("team_callbacks", "id", ("callback_vars",)),
)


def reseal_value(value: Any, old: Sealer, new: Sealer) -> Any:
    """`value` with each sealed string re-sealed under `new`; one `new` already sealed is kept
    (so a rotation that was interrupted can simply be run again)."""
    if isinstance(value, str):
        if not value.startswith(SEALED_PREFIX):
            return value
        try:
            plain = old.open(value)
        except SealError:
            new.open(value)  # raises when neither key opens it: the rotation must stop
            return value
        return new.seal(plain)
    if isinstance(value, dict):
        return {k: reseal_value(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [reseal_value(v, old, new) for v in value]
    return value


async def reseal(conn: asyncpg.Connection, old: Sealer, new: Sealer) -> dict[str, int]:
    """Re-seal every stored credential in one transaction; rows changed per table."""
    changed: dict[str, int] = {}
    schema = names.SCHEMA_ADMIN
    async with conn.transaction():
        for table, key, columns in SEALED_COLUMNS:
            cols = ", ".join(columns)
            rows = await conn.fetch(f'SELECT {key} AS k, {cols} FROM "{schema}".{table} FOR UPDATE')
            count = 0
            for row in rows:
                updates = {}
                for col in columns:
                    value = row[col]  # the pool decodes jsonb (store.init_connection)
                    resealed = reseal_value(value, old, new)
                    if resealed != value:
                        updates[col] = resealed
                if updates:
                    sets = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(updates))
                    await conn.execute(
                        f'UPDATE "{schema}".{table} SET {sets} WHERE {key} = $1',
                        row["k"],
                        *updates.values(),
                    )
                    count += 1
            changed[table] = count
    return changed
