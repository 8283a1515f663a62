"""With TOLLGATE_INGRESS_WORKERS each worker spools to its own file, and the first worker
(or the single process) takes over the files no running worker owns."""

from __future__ import annotations

from pathlib import Path

import pytest

from tollgate_ingress.app import spool_path, stranded_spools, worker_settings
from tollgate_ingress.settings import IngressSettings

pytestmark = pytest.mark.unit


def _settings(tmp_path: Path, workers: int = 1, **kw: object) -> IngressSettings:
    return IngressSettings(
        spool_path=tmp_path / "spool.sqlite3", port=4100, ingress_workers=workers, **kw
    )


def test_the_environment_names_the_worker_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOLLGATE_INGRESS_WORKERS", "3")
    assert IngressSettings().ingress_workers == 3
    assert IngressSettings().worker_index is None


def test_one_spool_file_per_worker(tmp_path: Path) -> None:
    single = _settings(tmp_path)
    assert spool_path(single) == tmp_path / "spool.sqlite3"
    two = _settings(tmp_path, 2)
    assert [spool_path(worker_settings(two, i)).name for i in range(2)] == [
        "spool-w0.sqlite3",
        "spool-w1.sqlite3",
    ]
    # The default name carries the port (one spool per replica), then the worker.
    default = IngressSettings(port=4100, ingress_workers=2)
    assert spool_path(worker_settings(default, 1)) == Path(".data/ingress-spool-4100-w1.sqlite3")


def test_first_worker_takes_over_files_of_workers_that_no_longer_exist(tmp_path: Path) -> None:
    for name in ("spool.sqlite3", "spool-w0.sqlite3", "spool-w1.sqlite3", "spool-w2.sqlite3"):
        (tmp_path / name).touch()
    (tmp_path / "spool-w2.sqlite3-wal").touch()  # not a spool of its own
    (tmp_path / "spool-2.sqlite3").touch()  # another replica's (devstack naming)
    (tmp_path / "other-w5.sqlite3").touch()
    two = _settings(tmp_path, 2)
    assert [p.name for p in stranded_spools(worker_settings(two, 0))] == [
        "spool-w2.sqlite3",
        "spool.sqlite3",
    ]
    assert stranded_spools(worker_settings(two, 1)) == []
    # Back to one process: every worker's file is its.
    assert [p.name for p in stranded_spools(_settings(tmp_path))] == [
        "spool-w0.sqlite3",
        "spool-w1.sqlite3",
        "spool-w2.sqlite3",
    ]


def test_a_single_process_with_nothing_left_over_takes_nothing(tmp_path: Path) -> None:
    (tmp_path / "spool.sqlite3").touch()
    assert stranded_spools(_settings(tmp_path)) == []
