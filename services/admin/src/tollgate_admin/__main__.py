"""Starts the admin service (`python -m tollgate_admin`), applies its migrations (`migrate`),
or rotates the salt key (`reseal`: TOLLGATE_OLD_SALT_KEY -> TOLLGATE_SALT_KEY)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

import asyncpg

from tollgate_admin import store
from tollgate_admin.app import MIGRATIONS, create_app
from tollgate_admin.propagation import KvState
from tollgate_admin.resealing import reseal
from tollgate_admin.settings import AdminSettings
from tollgate_shared import names
from tollgate_shared.config import TollgateConfig
from tollgate_shared.migrate import migrate_url
from tollgate_shared.publishing import connect_nats
from tollgate_shared.runtime import serve_service, setup_logging
from tollgate_shared.sealing import Sealer, SealError

log = logging.getLogger("tollgate_admin")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tollgate_admin", description=__doc__)
    parser.add_argument(
        "command", nargs="?", choices=["serve", "migrate", "reseal"], default="serve"
    )
    args = parser.parse_args()
    settings = AdminSettings()
    setup_logging(settings.log_level, "admin")
    if args.command == "migrate":
        applied = asyncio.run(migrate_url(settings.database_url, names.SCHEMA_ADMIN, MIGRATIONS))
        log.info("admin migrations applied: %s", applied or "none pending")
        return
    if args.command == "reseal":
        sys.exit(asyncio.run(_reseal(settings, settings.load_config())))
    serve_service(settings, create_app)


async def _reseal(settings: AdminSettings, cfg: TollgateConfig) -> int:
    """Re-seal every stored credential, then republish the KV buckets from the tables."""
    old_secret = os.environ.get("TOLLGATE_OLD_SALT_KEY")
    new = settings.sealer(cfg)
    if not old_secret or new is None:
        log.error("reseal needs TOLLGATE_OLD_SALT_KEY (in use) and TOLLGATE_SALT_KEY (new)")
        return 2
    pool = await asyncpg.create_pool(
        settings.database_url, min_size=1, max_size=2, init=store.init_connection
    )
    try:
        async with pool.acquire() as conn:
            changed = await reseal(conn, Sealer(old_secret), new)
        log.info("re-sealed rows per table: %s", changed)
        nc = await connect_nats(settings.nats_url, "tollgate-admin-reseal")
        try:
            kv = KvState(nc.jetstream(), prune=settings.kv_prune)
            await kv.open()
            log.info("KV buckets republished: %s", await kv.resync(pool))
        finally:
            await nc.drain()
    except SealError as exc:
        log.error("nothing changed: %s", exc)
        return 1
    finally:
        await pool.close()
    return 0


if __name__ == "__main__":
    main()
