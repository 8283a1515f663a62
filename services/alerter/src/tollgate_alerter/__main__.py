"""Starts the alerter service: `python -m tollgate_alerter`."""

from __future__ import annotations

from tollgate_alerter.app import create_app
from tollgate_alerter.settings import AlerterSettings
from tollgate_shared.runtime import serve, setup_logging
from tollgate_shared.settings import check_master_key


def main() -> None:
    settings = AlerterSettings()
    setup_logging(settings.log_level, "alerter")
    cfg = settings.load_config()
    check_master_key(settings.effective_master_key(cfg), settings.host)
    serve(create_app(settings, cfg), settings.host, settings.port, log_level=settings.log_level)


if __name__ == "__main__":
    main()
