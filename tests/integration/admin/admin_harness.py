"""Helpers for the admin integration tests: settings, event reading, error shape."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
from nats.js import JetStreamContext, api

from tollgate_admin.settings import AdminSettings
from tollgate_devstack.embedded import StackUrls
from tollgate_shared.events import AdminChanged

MASTER = "sk-admin-test-master-key-0123456789"


def uid(prefix: str) -> str:
    """A unique id: the session's NATS buckets and streams are shared by every test."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def admin_settings(stack: StackUrls, database_url: str) -> AdminSettings:
    # kv_prune off: every test has its own database but the session shares one NATS.
    return AdminSettings(
        nats_url=stack.nats_url, database_url=database_url, master_key=MASTER, kv_prune=False
    )


async def admin_events(
    js: JetStreamContext, since: datetime, object_id: str | None = None
) -> list[AdminChanged]:
    """AdminChanged events on the ADMIN stream since `since` (optionally for one object)."""
    config = api.ConsumerConfig(
        deliver_policy=api.DeliverPolicy.BY_START_TIME,
        opt_start_time=since.isoformat().replace("+00:00", "Z"),
        ack_policy=api.AckPolicy.NONE,
        inactive_threshold=30.0,
    )
    sub = await js.pull_subscribe("admin.>", stream="ADMIN", config=config)
    found: list[AdminChanged] = []
    try:
        while True:
            try:
                msgs = await sub.fetch(100, timeout=0.5)
            except TimeoutError:
                break
            for m in msgs:
                event = AdminChanged.from_json(m.data)
                if object_id is None or event.object_id == object_id:
                    found.append(event)
    finally:
        await sub.unsubscribe()
    return found


def error_of(resp: httpx.Response) -> dict[str, Any]:
    body = resp.json()
    assert set(body) == {"error"}, body
    err: dict[str, Any] = body["error"]
    assert err["code"] == str(resp.status_code)
    return err
