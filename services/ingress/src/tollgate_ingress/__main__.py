"""Starts ingress: `python -m tollgate_ingress`."""

from __future__ import annotations

from tollgate_ingress.app import create_app, worker_settings
from tollgate_ingress.settings import IngressSettings
from tollgate_shared.runtime import serve_service, setup_logging


def main() -> None:
    settings = IngressSettings()
    setup_logging(settings.log_level, "ingress")
    serve_service(
        settings,
        create_app,
        workers=settings.ingress_workers,
        worker_settings=worker_settings,
        service="ingress",
    )


if __name__ == "__main__":
    main()
