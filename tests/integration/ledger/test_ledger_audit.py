"""The audit consumer: admin changes into the audit log, idempotent, masked, switchable."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg
import orjson
import pytest
from ledger_support import audit_subscriber, publish_raw, run_until_idle
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from support.builders import admin_change
from tollgate_ledger.policy import LedgerPolicy
from tollgate_shared import consuming, names
from tollgate_shared.events import AdminChanged
from tollgate_shared.names import AdminSubject
from tollgate_shared.publishing import publish_event


@pytest.fixture
async def audit_spec(js: JetStreamContext) -> AsyncIterator[names.ConsumerSpec]:
    """A durable like `ledger-audit` that starts at the test (the ADMIN stream is shared)."""
    spec = names.ConsumerSpec(
        f"ledger-audit-t-{uuid.uuid4().hex[:8]}",
        names.STREAM_ADMIN.name,
        ("admin.>",),
        backoff_s=(0.2,),
    )
    await js.add_consumer(
        spec.stream,
        api.ConsumerConfig(
            durable_name=spec.name,
            deliver_policy=api.DeliverPolicy.NEW,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=30,
            max_deliver=spec.max_deliver,
            filter_subjects=list(spec.filter_subjects),
        ),
    )
    try:
        yield spec
    finally:
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(spec.stream, spec.name)


def changes(obj: str) -> list[AdminChanged]:
    return [
        admin_change(
            AdminSubject.KEY_CREATED,
            object_id=obj,
            changed_by="audit-test@example.com",
            changed_by_api_key="f" * 64,
            updated_values={
                "key_alias": "a",
                "token": obj,
                "metadata": {
                    "logging": [
                        {"callback_vars": {"langfuse_secret_key": "sk-lf-abcdefghijkl1234"}}
                    ]
                },
            },
        ),
        admin_change(
            AdminSubject.KEY_BLOCKED,
            object_id=obj,
            changed_by="audit-test@example.com",
            before_value={"blocked": False},
            updated_values={"blocked": True},
        ),
    ]


async def test_admin_changes_become_audit_rows_once(
    js: JetStreamContext,
    pool: asyncpg.Pool,
    audit_spec: names.ConsumerSpec,
) -> None:
    obj = f"obj-{uuid.uuid4().hex[:8]}"
    events = changes(obj)
    for ev in events:
        await publish_event(js, ev)
    await publish_raw(js, AdminSubject.KEY_UPDATED, b"{broken")
    for ev in events:  # redelivered beyond the duplicate window
        await publish_raw(js, ev.subject(), ev.to_json())
    terminated = consuming.MESSAGES_TERMINATED.labels(audit_spec.name)._value.get()
    c = audit_subscriber(audit_spec, pool, LedgerPolicy(store_audit_logs=True))
    await run_until_idle(js, audit_spec, c.handle)

    rows = await pool.fetch(
        "SELECT * FROM ledger.audit_log WHERE object_id = $1 ORDER BY updated_at", obj
    )
    assert [(r["id"], r["action"]) for r in rows] == [(e.event_id, e.action) for e in events]
    created = rows[0]
    assert created["table_name"] == "LiteLLM_VerificationToken"
    assert created["changed_by"] == "audit-test@example.com"
    assert created["changed_by_api_key"] == "f" * 64
    values = orjson.loads(created["updated_values"])
    secret = values["metadata"]["logging"][0]["callback_vars"]["langfuse_secret_key"]
    assert secret != "sk-lf-abcdefghijkl1234"
    assert secret.endswith("1234")
    assert orjson.loads(rows[1]["before_value"]) == {"blocked": False}
    assert consuming.MESSAGES_TERMINATED.labels(audit_spec.name)._value.get() == terminated + 1


async def test_audit_off_records_nothing(
    js: JetStreamContext,
    pool: asyncpg.Pool,
    audit_spec: names.ConsumerSpec,
) -> None:
    obj = f"obj-{uuid.uuid4().hex[:8]}"
    for ev in changes(obj):
        await publish_event(js, ev)
    c = audit_subscriber(audit_spec, pool, LedgerPolicy(store_audit_logs=False))
    await run_until_idle(js, audit_spec, c.handle)
    assert (
        await pool.fetchval("SELECT count(*) FROM ledger.audit_log WHERE object_id = $1", obj) == 0
    )
    info = await js.consumer_info(audit_spec.stream, audit_spec.name)
    assert info.num_ack_pending == 0
