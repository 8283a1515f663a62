"""Starts the ledger service: `python -m tollgate_ledger [serve|migrate|rebuild]`."""

from __future__ import annotations

import argparse
import asyncio
import sys

import asyncpg

from tollgate_ledger.app import MIGRATIONS, create_app, migrate
from tollgate_ledger.policy import LedgerPolicy
from tollgate_ledger.rebuild import rebuild
from tollgate_ledger.settings import LedgerSettings
from tollgate_shared import names
from tollgate_shared.publishing import connect_nats
from tollgate_shared.runtime import serve_service, setup_logging


async def _rebuild(settings: LedgerSettings, team: str | None, keep: bool) -> int:
    cfg = settings.load_config()
    await migrate(settings.database_url)
    nc = await connect_nats(settings.nats_url, "tollgate-ledger-rebuild")
    conn = await asyncpg.connect(settings.database_url)
    try:
        report = await rebuild(
            nc.jetstream(),
            conn,
            LedgerPolicy.from_config(cfg),
            MIGRATIONS,
            live_schema=names.SCHEMA_LEDGER,
            team=team,
            keep=keep,
        )
    finally:
        await conn.close()
        await nc.drain()
    for line in report.lines():
        print(line)
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tollgate_ledger", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the consumers and the read API (the default)")
    sub.add_parser("migrate", help="apply the ledger's migrations (TOLLGATE_DATABASE_URL)")
    rb = sub.add_parser("rebuild", help="replay the streams into fresh tables and compare")
    rb.add_argument("--team", help="replay and compare only this team's LLM events")
    rb.add_argument("--keep", action="store_true", help="keep the scratch schema afterwards")
    args = parser.parse_args(argv)

    settings = LedgerSettings()
    setup_logging(settings.log_level, "ledger")
    if args.command == "migrate":
        applied = asyncio.run(migrate(settings.database_url))
        print(f"ledger: applied {applied or 'nothing (up to date)'}")
        return 0
    if args.command == "rebuild":
        return asyncio.run(_rebuild(settings, args.team, args.keep))
    serve_service(settings, create_app)
    return 0


if __name__ == "__main__":
    sys.exit(main())
