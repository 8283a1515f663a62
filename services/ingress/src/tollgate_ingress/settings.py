"""Settings of the ingress service (environment `TOLLGATE_*`)."""

from __future__ import annotations

from pathlib import Path

from tollgate_shared.settings import ServiceSettings


class IngressSettings(ServiceSettings):
    port: int = 4000
    # Owners of the control and read paths that ingress forwards.
    admin_url: str = "http://127.0.0.1:4001"
    ledger_url: str = "http://127.0.0.1:4002"
    exporter_url: str = "http://127.0.0.1:4003"
    alerter_url: str = "http://127.0.0.1:4004"
    # Events wait here while NATS is unreachable (one file per replica).
    spool_path: Path = Path(".data/ingress-spool.sqlite3")
    # Upstream timeout when neither the deployment nor router_settings sets one.
    upstream_timeout_s: float = 600.0
    upstream_max_connections: int = 1000
    # How long to wait at start for NATS to rebuild the key/team/model view.
    state_ready_timeout_s: float = 60.0
