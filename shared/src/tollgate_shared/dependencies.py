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


def connect_redis(url: str, **kwargs: Any) -> Any:
    """A Redis client that retries a command on a broken connection (3 tries, 50 ms doubling
    to 500 ms) and checks idle pooled connections, so a Redis restart costs each replica a
    short retry instead of failing (or failing open) the calls that meet a stale connection.

    A command unanswered for `socket_timeout` (5 s unless given) fails instead of waiting
    forever: a frozen Redis (a hung host, a stopped process) holds the caller that long
    at most, and a consumer naks its batch for redelivery rather than holding it."""
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    kwargs.setdefault("socket_timeout", 5.0)
    kwargs.setdefault("socket_connect_timeout", 5.0)
    return Redis.from_url(
        url,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError, ConnectionResetError],
        health_check_interval=5,
        **kwargs,
    )
