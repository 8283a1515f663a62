"""Admin running in-process (its real lifespan) against the session's NATS and a fresh database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from admin_harness import MASTER, admin_settings
from asgi_lifespan import LifespanManager

from tollgate_admin.app import create_app
from tollgate_devstack.embedded import StackUrls
from tollgate_shared.config import load_config


@pytest.fixture
async def admin(provisioned: StackUrls, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on a started admin app, authenticated with the master key."""
    app = create_app(admin_settings(provisioned, database_url), load_config(None))
    # The transport gets `app` itself, not the manager's wrapper: that one shares one
    # `scope["state"]` dict across requests, where Litestar keeps per-request state.
    async with (
        LifespanManager(app, startup_timeout=30),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://admin",
            headers={"Authorization": f"Bearer {MASTER}"},
        ) as client,
    ):
        yield client
