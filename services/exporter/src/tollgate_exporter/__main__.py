"""Starts the exporter service (`python -m tollgate_exporter`), or runs `... dlq list|replay`."""

from __future__ import annotations

import sys

from tollgate_exporter.app import create_app
from tollgate_exporter.settings import ExporterSettings
from tollgate_shared.runtime import serve_service, setup_logging


def main() -> None:
    if sys.argv[1:2] == ["dlq"]:
        from tollgate_exporter.dlq import main as dlq

        raise SystemExit(dlq(sys.argv[2:]))
    settings = ExporterSettings()
    setup_logging(settings.log_level, "exporter")
    serve_service(settings, create_app)


if __name__ == "__main__":
    main()
