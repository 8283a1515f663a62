"""Starts the admin service: `python -m tollgate_admin`."""

from __future__ import annotations

from tollgate_shared.runtime import serve, setup_logging

from tollgate_admin.app import create_app
from tollgate_admin.settings import AdminSettings


def main() -> None:
    settings = AdminSettings()
    setup_logging(settings.log_level, "admin")
    cfg = settings.load_config()
    serve(create_app(settings, cfg), settings.host, settings.port, log_level=settings.log_level)


if __name__ == "__main__":
    main()
