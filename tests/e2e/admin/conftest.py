"""The admin service as a real process on a free port, against the session's NATS and a
fresh database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from admin_e2e_harness import E2E_MASTER

from support.processes import Service, start_service, stop_service
from tollgate_devstack.embedded import StackUrls, free_port


@pytest.fixture
def admin_service(provisioned: StackUrls, database_url: str, tmp_path: Path) -> Iterator[Service]:
    env = {
        "TOLLGATE_NATS_URL": provisioned.nats_url,
        "TOLLGATE_DATABASE_URL": database_url,
        "TOLLGATE_MASTER_KEY": E2E_MASTER,
        # The session's NATS is shared by every test database: never prune its buckets.
        "TOLLGATE_KV_PRUNE": "false",
        "TOLLGATE_LOG_LEVEL": "WARNING",
    }
    svc = start_service("tollgate_admin", free_port(), env, tmp_path)
    try:
        yield svc
    finally:
        stop_service(svc)
