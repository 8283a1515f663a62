"""Init container: wait until the streams, consumers and buckets exist and, for a
service that owns a schema, its migrations are applied (retried with tenacity)."""

import asyncio
import importlib
import os
import sys
from pathlib import Path

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_fixed

from tollgate_shared import names, permissions
from tollgate_shared.migrate import discover

SERVICE = os.environ["TOLLGATE_WAIT_SERVICE"]
TIMEOUT_S = float(os.environ.get("TOLLGATE_WAIT_TIMEOUT_S", "600"))
SCHEMAS = {"admin": names.SCHEMA_ADMIN, "ledger": names.SCHEMA_LEDGER}


async def missing_in_nats(url):
    import nats

    # As this service's own NATS user (TOLLGATE_NATS_USER/_PASSWORD), when it has one,
    # with that user's own inbox prefix (the only inbox subjects it may read).
    user = os.environ.get("TOLLGATE_NATS_USER")
    nc = await nats.connect(
        url,
        user=user,
        password=os.environ.get("TOLLGATE_NATS_PASSWORD"),
        connect_timeout=5,
        max_reconnect_attempts=0,
        **({"inbox_prefix": permissions.inbox_prefix(user)} if user else {}),
    )
    try:
        js = nc.jetstream()
        missing = []
        for stream in names.STREAMS:
            try:
                await js.stream_info(stream.name)
            except Exception:
                missing.append(f"stream {stream.name}")
        for consumer in names.CONSUMERS:
            if consumer.service != SERVICE:
                continue
            try:
                await js.consumer_info(consumer.stream, consumer.name)
            except Exception:
                missing.append(f"consumer {consumer.name}")
        for bucket in names.KV_BUCKETS:
            try:
                await js.stream_info(f"KV_{bucket}")
            except Exception:
                missing.append(f"bucket {bucket}")
        return missing
    finally:
        await nc.close()


async def missing_in_database(url):
    schema = SCHEMAS.get(SERVICE)
    if schema is None:
        return []
    import asyncpg

    package = importlib.import_module(f"tollgate_{SERVICE}")
    wanted = max(m.version for m in discover(Path(package.__file__).parent / "migrations"))
    conn = await asyncpg.connect(url, timeout=5)
    try:
        table = await conn.fetchval("SELECT to_regclass($1)", f"{schema}.schema_migrations")
        done = await conn.fetchval(f"SELECT max(version) FROM {table}") if table else None
    finally:
        await conn.close()
    return [] if done is not None and done >= wanted else [f"{schema} migration {wanted:04d}"]


class NotReadyError(Exception):
    pass


async def check():
    try:
        missing = await missing_in_nats(os.environ["TOLLGATE_NATS_URL"])
        missing += await missing_in_database(os.environ["TOLLGATE_DATABASE_URL"])
    except Exception as exc:
        missing = [f"{type(exc).__name__}: {exc}"]
    if missing:
        print(f"{SERVICE}: waiting for {', '.join(missing)}", flush=True)
        raise NotReadyError(", ".join(missing))


async def main():
    retrying = AsyncRetrying(
        stop=stop_after_delay(TIMEOUT_S),
        wait=wait_fixed(3),
        retry=retry_if_exception_type(NotReadyError),
        reraise=True,
    )
    try:
        await retrying(check)
    except NotReadyError as exc:
        print(f"{SERVICE}: gave up after {TIMEOUT_S:.0f} s waiting for {exc}", file=sys.stderr)
        return 1
    print(f"{SERVICE}: provisioned")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
