"""Settings of the exporter service (environment `TOLLGATE_*`)."""

from __future__ import annotations

from pydantic import Field

from tollgate_shared.settings import ServiceSettings


class ExporterSettings(ServiceSettings):
    port: int = 4003

    # Per-destination batching: a batch leaves when it is full or when the
    # oldest item has waited this long.
    export_batch_size: int = Field(100, ge=1, le=5000)
    export_batch_wait_s: float = Field(1.0, gt=0)
    # Retries of one batch on 429 / 5xx / timeouts / connection errors, with
    # exponential backoff and jitter; after the last attempt the items are
    # dead-lettered. Kept configurable so tests run in seconds.
    export_retry_attempts: int = Field(8, ge=1)
    export_retry_initial_s: float = Field(0.5, gt=0)
    export_retry_max_s: float = Field(30.0, gt=0)
    # A batch stops retrying after this long even with attempts left, which
    # bounds how long a dead destination holds messages unacknowledged.
    export_retry_deadline_s: float = Field(300.0, gt=0)
    export_timeout_s: float = Field(10.0, gt=0)
    # Items waiting per destination; beyond this a dead destination's items
    # are dead-lettered at once instead of holding everyone's acks.
    export_max_queue: int = Field(20_000, ge=1)
    # /key/health calls a destination unhealthy when its last delivery failed,
    # or it dead-lettered something, within this window.
    export_health_window_s: float = Field(300.0, gt=0)
