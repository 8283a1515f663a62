"""JSON Schema snapshots of events and KV states: `python -m tollgate_shared.schemas write|check`.

Each class in `EVENT_TYPES` has a checked-in snapshot `shared/schemas/<event_type>.json`,
and each KV state model one named `kv.<bucket>.json` (the pydantic serialization
schema, keys sorted): ingress and the exporter read what admin and the ledger write
into the buckets, so those models are contracts too. `check` exits 1 when a model no
longer matches its snapshot and says whether the change keeps the event's major
version (only optional fields added) or needs a new one.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tollgate_shared.events import EVENT_TYPES, Event
from tollgate_shared.state import STATE_TYPES

SNAPSHOT_DIR = Path(__file__).resolve().parents[2] / "schemas"
SNAPSHOT_TYPES: tuple[type[BaseModel], ...] = (*EVENT_TYPES, *STATE_TYPES.values())
_BUCKET_OF: dict[type[BaseModel], str] = {cls: bucket for bucket, cls in STATE_TYPES.items()}


def snapshot_name(cls: type[BaseModel]) -> str:
    """`<event_type>` for an event, `kv.<bucket>` for a KV state model."""
    if issubclass(cls, Event):
        return cls.event_type
    return f"kv.{_BUCKET_OF[cls]}"


def event_schema(cls: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema of what travels on the wire (or sits in the bucket) for `cls`."""
    schema = cls.model_json_schema(mode="serialization")
    if issubclass(cls, Event):
        schema["x-event-type"] = cls.event_type
    else:
        schema["x-kv-bucket"] = _BUCKET_OF[cls]
    return schema


def render(schema: Mapping[str, Any]) -> str:
    """Stable text: sorted keys, two-space indent, trailing newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def snapshot_path(cls: type[BaseModel], directory: Path = SNAPSHOT_DIR) -> Path:
    return directory / f"{snapshot_name(cls)}.json"


def breaking_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What in `new` would break a reader of `old` (empty: only optional additions).

    A top-level comparison: removed or newly required fields and changed field
    schemas break; an added optional field does not.
    """
    problems: list[str] = []
    old_props: Mapping[str, Any] = old.get("properties", {})
    new_props: Mapping[str, Any] = new.get("properties", {})
    for name in sorted(old_props.keys() - new_props.keys()):
        problems.append(f"field {name!r} removed")
    for name in sorted(old_props.keys() & new_props.keys()):
        if old_props[name] != new_props[name]:
            problems.append(f"field {name!r} changed")
    for name in sorted(set(new.get("required", ())) - set(old.get("required", ()))):
        problems.append(f"field {name!r} became required")
    if old.get("$defs") != new.get("$defs"):
        problems.append("nested definitions changed")
    return problems


@dataclass(frozen=True)
class Drift:
    event_type: str
    path: Path
    detail: str

    def describe(self) -> str:
        return f"{self.event_type}: {self.detail} ({self.path})"


def write(
    directory: Path = SNAPSHOT_DIR, types: Iterable[type[BaseModel]] = SNAPSHOT_TYPES
) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for cls in types:
        path = snapshot_path(cls, directory)
        path.write_text(render(event_schema(cls)))
        written.append(path)
    return written


def check(
    directory: Path = SNAPSHOT_DIR, types: Iterable[type[BaseModel]] = SNAPSHOT_TYPES
) -> list[Drift]:
    """Every event or state whose model differs from its snapshot, and every stray snapshot."""
    drift: list[Drift] = []
    expected = set()
    for cls in types:
        path = snapshot_path(cls, directory)
        expected.add(path.name)
        current = event_schema(cls)
        if not path.exists():
            drift.append(Drift(snapshot_name(cls), path, "no snapshot"))
            continue
        if path.read_text() == render(current):
            continue
        breaking = breaking_changes(json.loads(path.read_text()), current)
        detail = (
            "breaking change, needs a new major version: " + "; ".join(breaking)
            if breaking
            else "compatible change (optional fields added or descriptions changed)"
        )
        drift.append(Drift(snapshot_name(cls), path, detail))
    if directory.is_dir():
        for stray in sorted(directory.glob("*.json")):
            if stray.name not in expected:
                drift.append(Drift(stray.stem, stray, "snapshot of no event or state class"))
    return drift


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tollgate_shared.schemas", description=__doc__.splitlines()[0]
    )
    parser.add_argument("command", choices=("write", "check"))
    parser.add_argument("--dir", type=Path, default=SNAPSHOT_DIR, help="snapshot folder")
    args = parser.parse_args(argv)
    if args.command == "write":
        for path in write(args.dir):
            print(f"wrote {path}")
        return 0
    drift = check(args.dir)
    for d in drift:
        print(d.describe(), file=sys.stderr)
    if drift:
        print(
            "event or state models drifted from their snapshots; after a deliberate, compatible "
            "change "
            "run `./just snapshot-schemas`",
            file=sys.stderr,
        )
        return 1
    print(f"{len(SNAPSHOT_TYPES)} event and state schemas match their snapshots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
