"""Starts the alerter service: `python -m tollgate_alerter`."""

from __future__ import annotations

from tollgate_alerter.app import create_app
from tollgate_alerter.settings import AlerterSettings
from tollgate_shared.runtime import serve_service, setup_logging


def main() -> None:
    settings = AlerterSettings()
    setup_logging(settings.log_level, "alerter")
    serve_service(settings, create_app)


if __name__ == "__main__":
    main()
