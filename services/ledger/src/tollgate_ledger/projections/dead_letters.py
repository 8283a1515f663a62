"""The dead-letter record: messages JetStream stopped delivering, and what replay made of them."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True)
class DeadLetter:
    stream: str
    stream_seq: int
    consumer: str
    deliveries: int
    subject: str | None = None
    request_id: str | None = None


class DeadLetterProjection:
    def __init__(self, schema: str) -> None:
        self.schema = schema

    async def record(self, conn: asyncpg.Connection, dead: DeadLetter) -> bool:
        """Record one message; False when it was already recorded (another replica)."""
        inserted = await conn.fetchval(
            f"""
            INSERT INTO "{self.schema}".dead_letters
                (stream, stream_seq, consumer, deliveries, subject, request_id)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (stream, stream_seq, consumer) DO NOTHING
            RETURNING 1
            """,
            dead.stream,
            dead.stream_seq,
            dead.consumer,
            dead.deliveries,
            dead.subject,
            dead.request_id,
        )
        return inserted is not None

    async def pending(self, conn: asyncpg.Connection, limit: int = 1000) -> list[DeadLetter]:
        """Recorded and not yet replayed, oldest first."""
        rows = await conn.fetch(
            f"""
            SELECT stream, stream_seq, consumer, deliveries, subject, request_id
            FROM "{self.schema}".dead_letters WHERE replayed_at IS NULL
            ORDER BY captured_at, stream_seq LIMIT $1
            """,
            limit,
        )
        return [DeadLetter(**dict(r)) for r in rows]

    async def settle(self, conn: asyncpg.Connection, dead: DeadLetter, outcome: str) -> None:
        await conn.execute(
            f"""
            UPDATE "{self.schema}".dead_letters SET replayed_at = now(), outcome = $4
            WHERE stream = $1 AND stream_seq = $2 AND consumer = $3
            """,
            dead.stream,
            dead.stream_seq,
            dead.consumer,
            outcome[:2000],
        )
