"""Starts ingress: `python -m tollgate_ingress`."""

from __future__ import annotations

from tollgate_ingress.app import create_app
from tollgate_ingress.settings import IngressSettings
from tollgate_shared.runtime import serve, setup_logging
from tollgate_shared.settings import check_master_key


def main() -> None:
    settings = IngressSettings()
    setup_logging(settings.log_level, "ingress")
    cfg = settings.load_config()
    check_master_key(settings.effective_master_key(cfg), settings.host)
    serve(create_app(settings, cfg), settings.host, settings.port, log_level=settings.log_level)


if __name__ == "__main__":
    main()
