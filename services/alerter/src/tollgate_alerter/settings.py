"""Settings of the alerter service (environment `TOLLGATE_*`)."""

from __future__ import annotations

from tollgate_shared.settings import ServiceSettings


class AlerterSettings(ServiceSettings):
    port: int = 4004
