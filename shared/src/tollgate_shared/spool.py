"""A durable, ordered on-disk queue of unpublished events (SQLite, one file per process),
with a dead-letter table for events that can never be published."""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# (subject, msg_id, payload, event_type)
SpoolRow = tuple[str, str, bytes, str]


@dataclass(frozen=True)
class DeadLetter:
    """An event the publisher gave up on, with why."""

    seq: int
    subject: str
    msg_id: str
    event_type: str
    reason: str
    size: int
    at: float


class Spool:
    """Append-only FIFO of (subject, msg_id, payload, event_type) rows; survives restarts."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed row survives a process crash.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS spool ("
            " seq INTEGER PRIMARY KEY AUTOINCREMENT, subject TEXT NOT NULL,"
            " msg_id TEXT NOT NULL, payload BLOB NOT NULL, event_type TEXT NOT NULL)"
        )
        # Kept, not deleted: an operator can read the payload and publish it by hand.
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS dead ("
            " seq INTEGER PRIMARY KEY AUTOINCREMENT, subject TEXT NOT NULL,"
            " msg_id TEXT NOT NULL, payload BLOB NOT NULL, event_type TEXT NOT NULL,"
            " reason TEXT NOT NULL, at REAL NOT NULL)"
        )
        self._count = self._db.execute("SELECT count(*) FROM spool").fetchone()[0]

    def __len__(self) -> int:
        return int(self._count)

    def append(self, rows: list[SpoolRow]) -> tuple[int, int] | None:
        """Append rows in one transaction; returns their (first, last) seq (None if none)."""
        if not rows:
            return None
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO spool (subject, msg_id, payload, event_type) VALUES (?, ?, ?, ?)",
                rows,
            )
            last = int(self._db.execute("SELECT last_insert_rowid()").fetchone()[0])
            self._db.execute("COMMIT")
            self._count += len(rows)
        # One writer, one transaction: the rows took consecutive seqs.
        return last - len(rows) + 1, last

    def peek(self, limit: int) -> list[tuple[int, str, str, bytes, str]]:
        with self._lock:
            return list(
                self._db.execute(
                    "SELECT seq, subject, msg_id, payload, event_type FROM spool"
                    " ORDER BY seq LIMIT ?",
                    (limit,),
                )
            )

    def delete_through(self, seq: int) -> None:
        with self._lock:
            cur = self._db.execute("DELETE FROM spool WHERE seq <= ?", (seq,))
            self._count -= cur.rowcount

    def delete_range(self, first: int, last: int) -> None:
        """Delete the rows `first..last` (a batch written ahead, then published)."""
        with self._lock:
            cur = self._db.execute("DELETE FROM spool WHERE seq BETWEEN ? AND ?", (first, last))
            self._count -= cur.rowcount

    def bury(self, row: SpoolRow, reason: str) -> None:
        """Keep an event that can never be published in the dead-letter table."""
        with self._lock:
            self._db.execute(
                "INSERT INTO dead (subject, msg_id, payload, event_type, reason, at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (*row, reason[:1000], time.time()),
            )

    def dead_letters(self, limit: int = 1000) -> list[DeadLetter]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, subject, msg_id, event_type, reason, length(payload), at FROM dead"
                " ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [DeadLetter(*r) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
