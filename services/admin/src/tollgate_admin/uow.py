"""The unit of work: one request's PostgreSQL transaction, the `admin.*` events it queues in
the outbox and the KV writes it makes; after commit the KV buckets are written and the
outbox published."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import asyncpg

from tollgate_admin import store
from tollgate_admin.auth import Actor
from tollgate_admin.errors import AdminError, BadRequestError, ConflictError
from tollgate_admin.propagation import KvOp, KvState, OutboxRelay
from tollgate_shared.events import AdminChanged
from tollgate_shared.names import AdminSubject
from tollgate_shared.vocabulary import AdminEntity, Producer

PRODUCER: Producer = "admin"


@dataclass
class Unit:
    """One request's transaction: its connection, the events and the KV writes it produces."""

    conn: asyncpg.Connection
    actor: Actor
    events: list[AdminChanged] = field(default_factory=list)
    kv_ops: list[KvOp] = field(default_factory=list)

    def record(
        self,
        subject: AdminSubject,
        object_id: str,
        before: dict[str, Any] | None,
        updated: dict[str, Any] | None,
    ) -> None:
        """Queue the change published on `subject` (e.g. `AdminSubject.KEY_CREATED`)."""
        self.events.append(
            AdminChanged(
                producer=PRODUCER,
                entity=cast("AdminEntity", subject.entity),
                action=subject.action,
                object_id=object_id,
                changed_by=self.actor.changed_by,
                changed_by_api_key=self.actor.api_key_hash,
                before_value=before,
                updated_values=updated,
            )
        )

    def put(self, bucket: str, key: str, value: Any) -> None:
        self.kv_ops.append(KvOp(bucket, key, value))

    def delete(self, bucket: str, key: str) -> None:
        self.kv_ops.append(KvOp(bucket, key, None))


def db_error(exc: asyncpg.PostgresError) -> AdminError:
    """A database refusal as the client's 4xx (what it sent could not be stored)."""
    detail = getattr(exc, "detail", None) or str(exc)
    column = getattr(exc, "column_name", None) or getattr(exc, "constraint_name", None)
    if isinstance(exc, asyncpg.UniqueViolationError):
        return ConflictError(f"already exists: {detail}", column)
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return BadRequestError(f"refers to something that does not exist: {detail}", column)
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError | asyncpg.DataError):
        return BadRequestError(f"cannot be stored: {detail}", column)
    return BadRequestError(f"cannot be stored: {type(exc).__name__}", column)


class UnitOfWork:
    """Opens units (writes) and plain connections (reads) on the admin database."""

    def __init__(self, pool: asyncpg.Pool, kv: KvState, relay: OutboxRelay) -> None:
        self.pool = pool
        self.kv = kv
        self.relay = relay

    @asynccontextmanager
    async def write(self, actor: Actor) -> AsyncIterator[Unit]:
        """A transaction whose events commit with it; KV and JetStream follow the commit.

        The KV revisions of the keys the unit writes are read last inside the transaction,
        while its row locks are held: a later writer of the same rows cannot commit before
        that read, so if its KV write lands first this unit's (older) write is refused."""
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                unit = Unit(conn, actor)
                yield unit
                for event in unit.events:
                    await store.add_outbox(conn, event.event_id, event.model_dump_json())
                expected = await self.kv.revisions(unit.kv_ops)
        except asyncpg.PostgresError as exc:
            raise db_error(exc) from exc
        await self.kv.apply(unit.kv_ops, self.pool, expected)
        if unit.events:
            await self.relay.flush()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[asyncpg.Connection]:
        try:
            async with self.pool.acquire() as conn:
                yield conn
        except asyncpg.PostgresError as exc:
            raise db_error(exc) from exc
