"""Helpers for the admin integration tests: settings, event reading, error shape."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
from nats.js import JetStreamContext, api

from tollgate_admin.settings import AdminSettings
from tollgate_devstack.embedded import StackUrls
from tollgate_shared import names
from tollgate_shared.events import AdminChanged, decode

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
    """AdminChanged events on the ADMIN stream since `since` (optionally for one object).

    Reads up to the stream's last message at the time of the call (admin publishes before
    it answers), so "nothing else arrived" needs no idle timeout."""
    stream = names.STREAM_ADMIN
    last = (await js.stream_info(stream.name)).state.last_seq
    config = api.ConsumerConfig(
        deliver_policy=api.DeliverPolicy.BY_START_TIME,
        opt_start_time=since.isoformat().replace("+00:00", "Z"),
        ack_policy=api.AckPolicy.NONE,
        inactive_threshold=30.0,
    )
    sub = await js.pull_subscribe(stream.subjects[0], stream=stream.name, config=config)
    found: list[AdminChanged] = []
    try:
        pending = (await sub.consumer_info()).num_pending
        seen = 0
        while pending and seen < last:
            for m in await sub.fetch(100, timeout=5):
                seen = m.metadata.sequence.stream
                if seen > last:
                    break
                event = decode(m.subject, m.data, AdminChanged)
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
