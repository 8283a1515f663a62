"""Settings of the admin service (environment `TOLLGATE_*`)."""

from __future__ import annotations

from pydantic import Field

from tollgate_shared.settings import ServiceSettings


class AdminSettings(ServiceSettings):
    port: int = 4001
    kv_prune: bool = Field(
        True,
        description="on start, delete KV entries that PostgreSQL does not have (full repair); "
        "off only when several test databases share one NATS",
    )
