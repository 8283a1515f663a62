"""Settings of the ingress service (environment `TOLLGATE_*`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from tollgate_shared.settings import ServiceSettings


class IngressSettings(ServiceSettings):
    port: int = 4000
    # Owners of the control and read paths that ingress forwards.
    admin_url: str = "http://127.0.0.1:4001"
    ledger_url: str = "http://127.0.0.1:4002"
    exporter_url: str = "http://127.0.0.1:4003"
    alerter_url: str = "http://127.0.0.1:4004"
    # Events wait here while NATS is unreachable (one file per replica, and per worker).
    spool_path: Path = Path(".data/ingress-spool.sqlite3")
    # TOLLGATE_INGRESS_WORKERS: processes serving the port (SO_REUSEPORT), under a
    # supervisor; 1 is one process and no supervisor.
    ingress_workers: int = Field(1, ge=1, le=256)
    # Which of them this process is: set by the supervisor for each worker, not by hand.
    worker_index: int | None = Field(None, ge=0)
    # Upstream timeout when neither the deployment nor router_settings sets one.
    upstream_timeout_s: float = 600.0
    upstream_max_connections: int = 1000
    # How long to wait at start for NATS to rebuild the key/team/model view.
    state_ready_timeout_s: float = 60.0
    # How long to wait at start for NATS before serving degraded: the port bound, events
    # spooled, only the master key known until NATS answers and the views load.
    nats_start_timeout_s: float = 5.0
    # Events still in memory this long (queued, or in a batch JetStream has not acked) are
    # written ahead to the spool: what a SIGKILL can lose is bounded by time.
    spool_write_ahead_ms: int = Field(200, gt=0)
    # A call still running after this long announces itself (`llm.request.started`, with
    # its real start time) so the alerter can time it out as hanging; a quicker call sends
    # only its completed or failed event, which halves the event plane's work per call.
    # 0 announces every call at once.
    started_event_after_ms: int = Field(1000, ge=0)
    # Budgets: admit calls of an entity with a max budget when its spend total or the
    # reservations cannot be read (NATS or Redis down)? Refused by default (fail closed).
    budget_fail_open: bool = False
    # How long a finished call's cost stays reserved (time for the ledger to commit it).
    budget_hold_s: float = Field(15.0, ge=0)
    # Completion tokens reserved for a call that sets no max_tokens.
    budget_reserve_output_tokens: int = Field(1024, ge=0)
    # How long a stored Responses API response (previous_response_id, GET /v1/responses/{id})
    # is kept in Redis; 30 days, as OpenAI keeps them.
    response_retention_s: float = Field(30 * 86400, gt=0)
