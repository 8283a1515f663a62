"""`rebuild`: replay the LLM and ADMIN streams into a scratch schema and compare totals.

The replay reads each stream from its first message with an ephemeral ordered
consumer, writes through the same projection code the live consumers use, then
compares every spend total (and the set of audit ids) with the live schema.
Events older than a stream's max age are gone from it, so a live projection
older than that can legitimately hold more than a rebuild finds.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import asyncpg
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from tollgate_ledger.audit import audit_row
from tollgate_ledger.decoding import ADMIN_CHANGE, FINISHED
from tollgate_ledger.policy import LedgerPolicy
from tollgate_ledger.projections.audit import AuditProjection
from tollgate_ledger.projections.reads import LedgerReader
from tollgate_ledger.projections.spend import SpendProjection
from tollgate_ledger.rows import spend_row
from tollgate_shared import names
from tollgate_shared.events import EventDecodeError, decode
from tollgate_shared.migrate import apply_migrations

log = logging.getLogger(__name__)

BatchWriter = Callable[[list[Msg]], Awaitable[None]]


@dataclass
class RebuildReport:
    scratch_schema: str
    events: int = 0
    skipped: int = 0
    live: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    rebuilt: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    mismatches: list[tuple[str, str, Decimal | None, Decimal | None]] = field(default_factory=list)
    audit_live: int | None = None
    audit_rebuilt: int | None = None

    @property
    def ok(self) -> bool:
        return not self.mismatches and self.audit_live == self.audit_rebuilt

    def lines(self) -> list[str]:
        out = [
            f"replayed {self.events} events into {self.scratch_schema} "
            f"({self.skipped} undecodable, skipped)",
            f"spend totals   live: {len(self.live):>6} entities, "
            f"sum {sum(self.live.values(), Decimal(0))}",
            f"spend totals rebuilt: {len(self.rebuilt):>6} entities, "
            f"sum {sum(self.rebuilt.values(), Decimal(0))}",
        ]
        if self.audit_live is not None or self.audit_rebuilt is not None:
            out.append(f"audit rows     live: {self.audit_live}  rebuilt: {self.audit_rebuilt}")
        for entity, entity_id, live, rebuilt in self.mismatches[:50]:
            out.append(f"MISMATCH {entity} {entity_id}: live {live} rebuilt {rebuilt}")
        if len(self.mismatches) > 50:
            out.append(f"... and {len(self.mismatches) - 50} more mismatches")
        out.append(
            "OK: rebuilt totals equal the live projection"
            if self.ok
            else "FAILED: rebuilt totals differ from the live projection"
        )
        return out


async def replay(
    js: JetStreamContext,
    stream: str,
    subject: str,
    write: BatchWriter,
    *,
    batch_size: int = 1000,
    idle_s: float = 5.0,
) -> int:
    """Feed every message on `subject` to `write` in batches, from the stream's start.

    Reads exactly the messages the stream holds for `subject` when the replay starts
    (counted from the stream's per-subject state), so it ends deterministically.
    """
    info = await js.stream_info(stream, subjects_filter=subject)
    expected = sum((info.state.subjects or {}).values())
    if not expected:
        return 0
    sub = await js.subscribe(subject, stream=stream, ordered_consumer=True)
    seen = 0
    buf: list[Msg] = []
    try:
        while seen < expected:
            try:
                msg = await sub.next_msg(timeout=idle_s)
            except TimeoutError:
                log.warning(
                    "replay of %s stopped after %d of %d messages (expired meanwhile?)",
                    subject,
                    seen,
                    expected,
                )
                break
            buf.append(msg)
            seen += 1
            if len(buf) >= batch_size:
                await write(buf)
                buf = []
        if buf:
            await write(buf)
    finally:
        await sub.unsubscribe()
    return seen


def _llm_subjects(team: str | None) -> list[str]:
    bases = (names.LLM_REQUEST_COMPLETED, names.LLM_REQUEST_FAILED)
    return [f"{b}.{names.subject_token(team)}" if team else f"{b}.*" for b in bases]


async def rebuild(
    js: JetStreamContext,
    conn: asyncpg.Connection,
    policy: LedgerPolicy,
    migrations: Path,
    *,
    live_schema: str = names.SCHEMA_LEDGER,
    team: str | None = None,
    keep: bool = False,
    batch_size: int = 1000,
) -> RebuildReport:
    """Replay into a fresh scratch schema and compare it with `live_schema`.

    With `team`, only that team's LLM events are replayed and only the totals they
    produce are compared (the audit log is not); without it, everything is.
    """
    scratch = f"{live_schema}_rebuild_{datetime.now(UTC):%Y%m%d%H%M%S%f}"
    await apply_migrations(conn, scratch, migrations)
    report = RebuildReport(scratch)
    # Content does not change a total: the replay never fetches or stores it.
    replay_policy = replace(policy, store_prompts=False)
    spend = SpendProjection(scratch)

    async def write_spend(msgs: list[Msg]) -> None:
        rows = []
        for msg in msgs:
            try:
                event = decode(msg.subject, msg.data, FINISHED, content=False)
            except EventDecodeError:
                report.skipped += 1
                continue
            rows.append(spend_row(event, replay_policy))
        async with conn.transaction():
            await spend.write(conn, rows)
        report.events += len(rows)

    try:
        for subject in _llm_subjects(team):
            await replay(js, names.STREAM_LLM.name, subject, write_spend, batch_size=batch_size)
        if team is None and policy.store_audit_logs:
            audit = AuditProjection(scratch)

            async def write_audit(msgs: list[Msg]) -> None:
                rows = []
                for msg in msgs:
                    try:
                        rows.append(audit_row(decode(msg.subject, msg.data, ADMIN_CHANGE)))
                    except EventDecodeError:
                        report.skipped += 1
                async with conn.transaction():
                    await audit.write(conn, rows)
                report.events += len(rows)

            await replay(
                js,
                names.STREAM_ADMIN.name,
                f"{names.ADMIN_PREFIX}.>",
                write_audit,
                batch_size=batch_size,
            )
            report.audit_live = await conn.fetchval(
                f'SELECT count(*) FROM "{live_schema}".audit_log'
            )
            report.audit_rebuilt = await conn.fetchval(
                f'SELECT count(*) FROM "{scratch}".audit_log'
            )

        report.rebuilt = await LedgerReader(scratch).all_totals(conn)
        live = await LedgerReader(live_schema).all_totals(conn)
        report.live = live if team is None else {k: live[k] for k in report.rebuilt if k in live}
        for k in sorted(set(report.live) | set(report.rebuilt)):
            a, b = report.live.get(k), report.rebuilt.get(k)
            if a != b:
                report.mismatches.append((k[0], k[1], a, b))
    finally:
        if not keep:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{scratch}" CASCADE')
    return report
