"""A spool is one process's (an flock), and a spool left by a process that no longer runs
is taken over whole: its rows in order after the taker's own, its dead letters, the file
deleted."""

from __future__ import annotations

from pathlib import Path

import pytest

from tollgate_shared.spool import Spool, SpoolInUseError, SpoolRow

pytestmark = pytest.mark.unit


def _row(n: int) -> SpoolRow:
    return ("llm.request.completed.v1._", f"msg-{n}", f'{{"n": {n}}}'.encode(), "completed")


def _ids(spool: Spool) -> list[str]:
    return [msg_id for _seq, _subject, msg_id, _payload, _etype in spool.peek(100)]


def test_rows_move_after_the_takers_own_in_order_with_dead_letters(tmp_path: Path) -> None:
    left = Spool(tmp_path / "spool-w2.sqlite3")
    left.append([_row(1), _row(2)])
    left.append([_row(3)])
    left.bury(_row(9), "too large")
    left.close()
    own = Spool(tmp_path / "spool-w0.sqlite3")
    own.append([_row(0)])

    assert own.take_over(tmp_path / "spool-w2.sqlite3") == 3

    assert _ids(own) == ["msg-0", "msg-1", "msg-2", "msg-3"]
    assert len(own) == 4
    assert [(d.msg_id, d.reason) for d in own.dead_letters()] == [("msg-9", "too large")]
    assert sorted(p.name for p in tmp_path.iterdir() if "w2" in p.name) == []
    own.delete_through(own.peek(1)[0][0])  # the moved rows are ordinary rows of this spool
    assert _ids(own)[0] == "msg-1"
    own.close()


def test_a_spool_held_by_a_running_process_is_neither_opened_twice_nor_taken(
    tmp_path: Path,
) -> None:
    held = Spool(tmp_path / "spool-w1.sqlite3")
    held.append([_row(1)])
    with pytest.raises(SpoolInUseError):
        Spool(tmp_path / "spool-w1.sqlite3")
    own = Spool(tmp_path / "spool-w0.sqlite3")
    with pytest.raises(SpoolInUseError):
        own.take_over(tmp_path / "spool-w1.sqlite3")
    assert len(own) == 0
    assert (tmp_path / "spool-w1.sqlite3").exists()
    held.close()
    assert own.take_over(tmp_path / "spool-w1.sqlite3") == 1  # released by close()
    own.close()


def test_an_empty_file_is_taken_over_as_an_empty_spool(tmp_path: Path) -> None:
    (tmp_path / "spool-w4.sqlite3").touch()  # a process that died before creating tables
    own = Spool(tmp_path / "spool.sqlite3")
    assert own.take_over(tmp_path / "spool-w4.sqlite3") == 0
    assert not (tmp_path / "spool-w4.sqlite3").exists()
    own.close()
    own.close()  # closing twice is harmless
