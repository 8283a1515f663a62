"""What the supervisor keeps in the data folder: pid file, status file, logs, version marker."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

MARKER_NAME = "tollgate-data.json"


def tollgate_version() -> str:
    try:
        return metadata.version("tollgate-devstack")
    except metadata.PackageNotFoundError:
        return "0.0.0"


@dataclass(frozen=True)
class DataDir:
    root: Path

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pid_file(self) -> Path:
        return self.run / "supervisor.pid"

    @property
    def status_file(self) -> Path:
        return self.run / "status.json"

    @property
    def marker(self) -> Path:
        return self.root / MARKER_NAME

    def log_file(self, name: str) -> Path:
        """Where `name`'s output goes: services and the supervisor under logs/, servers beside
        their data (they write and rotate their own)."""
        servers = {
            "nats": self.root / "nats" / "nats.log",
            "redis": self.root / "redis" / "redis.log",
            "postgres": self.root / "pg" / "log",
        }
        return servers.get(name, self.logs / f"{name}.log")

    # -- pid file ---------------------------------------------------------------------------

    def running_pid(self) -> int | None:
        """The pid of the supervisor that owns this data folder, if it is alive."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def claim(self) -> None:
        """Write our pid; the caller checked `running_pid()` first."""
        self.run.mkdir(parents=True, exist_ok=True)
        self.pid_file.write_text(f"{os.getpid()}\n")

    def release(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            if int(self.pid_file.read_text().strip()) == os.getpid():
                self.pid_file.unlink()

    # -- status file ------------------------------------------------------------------------

    def write_status(self, status: dict[str, Any]) -> None:
        self.run.mkdir(parents=True, exist_ok=True)
        tmp = self.status_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(status, indent=1, sort_keys=True))
        tmp.replace(self.status_file)

    def read_status(self) -> dict[str, Any] | None:
        try:
            loaded = json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            return None
        return loaded if isinstance(loaded, dict) else None

    # -- version marker ---------------------------------------------------------------------

    def written_by(self) -> str | None:
        try:
            loaded = json.loads(self.marker.read_text())
        except (OSError, ValueError):
            return None
        version = loaded.get("tollgate_version") if isinstance(loaded, dict) else None
        return version if isinstance(version, str) else None

    def mark(self, version: str | None = None) -> None:
        """Record that this version's migrations have been applied to the folder."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.marker.write_text(
            json.dumps({"tollgate_version": version or tollgate_version()}, indent=1) + "\n"
        )


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def newer_data_message(data_dir: Path, written: str, ours: str) -> str | None:
    """A refusal when the folder was written by a newer Tollgate than `ours`, else None.

    Migrations only go forward: an older version would run against tables it does not know.
    """
    try:
        newer = Version(written) > Version(ours)
    except InvalidVersion:
        newer = False
    if not newer:
        return None
    return (
        f"the data folder {data_dir} was written by Tollgate {written}, newer than this "
        f"Tollgate {ours}. Migrations only go forward, so an older version cannot run on it: "
        f"start Tollgate {written} or newer, or restore a backup taken with {ours} into a fresh "
        "data folder (`./just restore`). Nothing was started."
    )
