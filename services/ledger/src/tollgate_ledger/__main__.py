"""Starts the ledger service: `python -m tollgate_ledger [serve|migrate|rebuild|replay-dead]`."""

from __future__ import annotations

import argparse
import asyncio
import sys

import asyncpg

from tollgate_ledger.app import MIGRATIONS, create_app, migrate
from tollgate_ledger.budgets import SpendMirror
from tollgate_ledger.policy import LedgerPolicy
from tollgate_ledger.projections.audit import AuditProjection
from tollgate_ledger.projections.dead_letters import DeadLetterProjection
from tollgate_ledger.projections.spend import SpendProjection
from tollgate_ledger.rebuild import rebuild
from tollgate_ledger.service import (
    Announcer,
    AuditService,
    DeadLetters,
    SpendService,
    js_publisher,
)
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


async def _replay_dead(settings: LedgerSettings) -> int:
    """Write the messages JetStream gave up on, re-read from their streams by sequence."""
    cfg = settings.load_config()
    await migrate(settings.database_url)
    policy = LedgerPolicy.from_config(cfg)
    nc = await connect_nats(settings.nats_url, "tollgate-ledger-replay-dead")
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        js = nc.jetstream()
        publish = js_publisher(js)
        schema = names.SCHEMA_LEDGER
        projection = SpendProjection(schema)
        spend = SpendService(
            names.LEDGER_SPEND.name,
            js,
            pool,
            projection,
            policy,
            Announcer(pool, projection, None, SpendMirror(js), publish),
            publish,
        )
        audit = AuditService(names.LEDGER_AUDIT.name, pool, AuditProjection(schema), policy)
        dead = DeadLetters(pool, js, DeadLetterProjection(schema), publish)
        report = await dead.replay(spend, audit)
        if spend.announcer is not None:
            await spend.announcer.stop()
    finally:
        await pool.close()
        await nc.drain()
    for line in report.lines():
        print(line)
    return 0 if report.retry == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tollgate_ledger", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the consumers and the read API (the default)")
    sub.add_parser("migrate", help="apply the ledger's migrations (TOLLGATE_DATABASE_URL)")
    rb = sub.add_parser("rebuild", help="replay the streams into fresh tables and compare")
    rb.add_argument("--team", help="replay and compare only this team's LLM events")
    rb.add_argument("--keep", action="store_true", help="keep the scratch schema afterwards")
    sub.add_parser(
        "replay-dead",
        help="write the messages JetStream stopped delivering (max deliveries), from the stream",
    )
    args = parser.parse_args(argv)

    settings = LedgerSettings()
    setup_logging(settings.log_level, "ledger")
    if args.command == "migrate":
        applied = asyncio.run(migrate(settings.database_url))
        print(f"ledger: applied {applied or 'nothing (up to date)'}")
        return 0
    if args.command == "rebuild":
        return asyncio.run(_rebuild(settings, args.team, args.keep))
    if args.command == "replay-dead":
        return asyncio.run(_replay_dead(settings))
    serve_service(settings, create_app)
    return 0


if __name__ == "__main__":
    sys.exit(main())
