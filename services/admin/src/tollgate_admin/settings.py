"""Settings of the admin service (environment `TOLLGATE_*`)."""

from __future__ import annotations

from tollgate_shared.settings import ServiceSettings


class AdminSettings(ServiceSettings):
    port: int = 4001
