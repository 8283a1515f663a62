"""Settings of the exporter service (environment `TOLLGATE_*`)."""

from __future__ import annotations

from tollgate_shared.settings import ServiceSettings


class ExporterSettings(ServiceSettings):
    port: int = 4003
