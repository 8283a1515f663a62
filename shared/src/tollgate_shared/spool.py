"""A durable, ordered on-disk queue of unpublished events (SQLite, one file per process)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


class Spool:
    """Append-only FIFO of (subject, msg_id, payload, headers) rows; survives restarts."""

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
        self._count = self._db.execute("SELECT count(*) FROM spool").fetchone()[0]

    def __len__(self) -> int:
        return int(self._count)

    def append(self, rows: list[tuple[str, str, bytes, str]]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO spool (subject, msg_id, payload, event_type) VALUES (?, ?, ?, ?)",
                rows,
            )
            self._db.execute("COMMIT")
            self._count += len(rows)

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

    def close(self) -> None:
        with self._lock:
            self._db.close()
