"""Dependency probes for `/health`: NATS, PostgreSQL and Redis."""

from __future__ import annotations

from typing import Any

import asyncpg
from nats.aio.client import Client as NATS


async def check_nats(nc: NATS | None) -> dict[str, Any]:
    if nc is None or not nc.is_connected:
        raise ConnectionError("not connected")
    await nc.flush(timeout=1)
    return {"server": nc.connected_url.netloc if nc.connected_url else None}


async def check_postgres(pool: asyncpg.Pool | None) -> dict[str, Any]:
    if pool is None:
        raise ConnectionError("no pool")
    async with pool.acquire() as conn:
        await conn.fetchval("SELECT 1")
    return {"pool_size": pool.get_size()}


async def check_redis(client: Any) -> dict[str, Any]:
    if client is None:
        raise ConnectionError("no client")
    await client.ping()
    return {}
