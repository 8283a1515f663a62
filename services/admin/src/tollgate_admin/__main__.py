"""Starts the admin service (`python -m tollgate_admin`) or applies its migrations (`migrate`)."""

from __future__ import annotations

import argparse
import asyncio
import logging

from tollgate_admin.app import MIGRATIONS, create_app
from tollgate_admin.settings import AdminSettings
from tollgate_shared import names
from tollgate_shared.migrate import migrate_url
from tollgate_shared.runtime import serve, setup_logging
from tollgate_shared.settings import check_master_key

log = logging.getLogger("tollgate_admin")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tollgate_admin", description=__doc__)
    parser.add_argument("command", nargs="?", choices=["serve", "migrate"], default="serve")
    args = parser.parse_args()
    settings = AdminSettings()
    setup_logging(settings.log_level, "admin")
    if args.command == "migrate":
        applied = asyncio.run(migrate_url(settings.database_url, names.SCHEMA_ADMIN, MIGRATIONS))
        log.info("admin migrations applied: %s", applied or "none pending")
        return
    cfg = settings.load_config()
    check_master_key(settings.effective_master_key(cfg), settings.host)
    serve(create_app(settings, cfg), settings.host, settings.port, log_level=settings.log_level)


if __name__ == "__main__":
    main()
