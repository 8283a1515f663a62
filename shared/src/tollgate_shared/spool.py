"""A durable, ordered on-disk queue of unpublished events (SQLite, one file per process),
with a dead-letter table for events that can never be published."""

from __future__ import annotations

import fcntl
import os
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


class SpoolInUseError(RuntimeError):
    """Another process holds this spool file (one file, one process)."""


def _hold(path: Path, flags: int = os.O_RDWR | os.O_CREAT) -> int:
    """An open descriptor of `path` with an exclusive flock, or SpoolInUseError. flock, not
    fcntl locks: SQLite's own locks are POSIX fcntl locks, which flock never touches."""
    fd = os.open(path, flags, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SpoolInUseError(f"spool {path} is held by another process") from None
    return fd


class Spool:
    """Append-only FIFO of (subject, msg_id, payload, event_type) rows; survives restarts.

    The process that opens a spool holds it (an flock) until `close`, so a second process
    cannot write to the same file and `take_over` never takes a live process's file.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # Kept open until close(): SQLite drops its own POSIX locks on a file when any
        # descriptor of it in the process is closed.
        self._holder = _hold(path)
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

    def take_over(self, other: Path) -> int:
        """Move the rows of a spool another process left behind (a worker index that no
        longer runs) to the end of this one, in their order, with its dead letters, then
        delete that file; the number of rows moved. SpoolInUseError while a process holds
        it. A copy published twice is dropped by JetStream's de-duplication window."""
        holder = _hold(other, os.O_RDWR)
        try:
            with self._lock:
                self._db.execute("ATTACH DATABASE ? AS stranded", (str(other),))
                try:
                    moved = self._move_stranded()
                finally:
                    self._db.execute("DETACH DATABASE stranded")
                self._count += moved
            for leftover in (other, Path(f"{other}-wal"), Path(f"{other}-shm")):
                leftover.unlink(missing_ok=True)
        finally:
            os.close(holder)
        return moved

    def _move_stranded(self) -> int:
        tables = {
            row[0]
            for row in self._db.execute(
                "SELECT name FROM stranded.sqlite_master WHERE type='table'"
            )
        }
        self._db.execute("BEGIN IMMEDIATE")
        try:
            moved = 0
            if "spool" in tables:
                moved = self._db.execute(
                    "INSERT INTO main.spool (subject, msg_id, payload, event_type)"
                    " SELECT subject, msg_id, payload, event_type FROM stranded.spool"
                    " ORDER BY seq"
                ).rowcount
            if "dead" in tables:
                self._db.execute(
                    "INSERT INTO main.dead (subject, msg_id, payload, event_type, reason, at)"
                    " SELECT subject, msg_id, payload, event_type, reason, at FROM stranded.dead"
                    " ORDER BY seq"
                )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return moved

    def close(self) -> None:
        with self._lock:
            self._db.close()
            if self._holder >= 0:
                os.close(self._holder)
                self._holder = -1
