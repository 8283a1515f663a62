"""Event versions are executed: golden payloads decode forever, unknown versions are refused,
older versions are upcast, and KV states are contracts like events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from tollgate_shared import schemas
from tollgate_shared.events import (
    CATALOG,
    AdminChanged,
    Event,
    EventDecodeError,
    LlmRequestCompleted,
    UnknownEventError,
    UnknownEventVersionError,
    decode,
)
from tollgate_shared.events.registry import CatalogEntry, EventRegistry
from tollgate_shared.state import STATE_TYPES

GOLDEN = Path(__file__).parent / "golden"
EVENT_GOLDEN = sorted(p for p in GOLDEN.glob("*/*.json") if not p.parent.name.startswith("kv."))
STATE_GOLDEN = sorted(GOLDEN.glob("kv.*/*.json"))


def _load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


@pytest.mark.parametrize("path", EVENT_GOLDEN, ids=_id)
def test_golden_payload_decodes_to_its_family(path: Path) -> None:
    doc = _load(path)
    event = decode(doc["subject"], json.dumps(doc["payload"]).encode())
    family = path.parent.name
    assert any(e.event is type(event) and e.event.event_type == family for e in CATALOG)
    # What the payload said survives decoding (upcasting aside, nothing is lost).
    for name in ("event_id", "producer"):
        assert getattr(event, name) == doc["payload"][name]


@pytest.mark.parametrize("entry", CATALOG, ids=lambda e: e.event.event_type)
def test_every_readable_version_has_a_golden_payload(entry: CatalogEntry) -> None:
    folder = GOLDEN / entry.event.event_type
    for version in entry.readable_versions():
        found = list(folder.glob(f"v{version}-*.json"))
        assert found, f"no golden payload for v{version} of {entry.event.event_type} in {folder}"


@pytest.mark.parametrize(
    "subject",
    [
        "admin.key.created.v2",
        "llm.request.completed.v2._",
        "llm.deployment.cooled_down.v9",
        "alert.sent.v2.budget_alerts",
        "ledger.spend.updated.v0",
        "export.deadletter.v2",
    ],
)
def test_an_unknown_version_is_refused_not_read_as_v1(subject: str) -> None:
    payload = (GOLDEN / "admin.change.v1" / "v1-full.json").read_bytes()
    with pytest.raises(UnknownEventVersionError, match="unknown"):
        decode(subject, payload)


@pytest.mark.parametrize("subject", ["admin.key", "llm.request.completed", "nope.v1", "alert.v1"])
def test_a_subject_of_no_family_is_refused(subject: str) -> None:
    with pytest.raises(UnknownEventError):
        decode(subject, b"{}")


def test_the_expected_class_narrows_what_a_consumer_reads() -> None:
    doc = _load(GOLDEN / "admin.change.v1" / "v1-full.json")
    with pytest.raises(EventDecodeError, match="not what this consumer reads"):
        decode(doc["subject"], json.dumps(doc["payload"]), LlmRequestCompleted)


@pytest.mark.parametrize("bad", [b"", b"{", b"[]", b'{"event_id": 1}', b"null"])
def test_bad_payloads_are_one_error_type(bad: bytes) -> None:
    with pytest.raises(EventDecodeError):
        decode("llm.request.completed.v1._", bad)


def test_content_can_be_left_unread_and_the_class_is_kept() -> None:
    doc = _load(GOLDEN / "llm.request.completed.v1" / "v1-full.json")
    event = decode(doc["subject"], json.dumps(doc["payload"]), content=False)
    assert isinstance(event, LlmRequestCompleted)
    assert event.messages is None
    assert event.response is None
    assert str(event.spend) == doc["payload"]["spend"]


# --- upcasting, with a v2 of the admin change as the catalog would declare it ----------


class AdminChangedV2(Event):
    """v2 renames `changed_by` to `actor` (a breaking change, hence a new version)."""

    event_type: ClassVar[str] = "admin.change.v2"
    entity: str
    action: str
    object_id: str
    actor: str | None = None


def _v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    out = dict(payload)
    out["actor"] = out.pop("changed_by", None)
    return out


V2_REGISTRY = EventRegistry(
    (CatalogEntry(AdminChangedV2, "admin", "admin.{entity}.{action}.v2", upcasters={1: _v1_to_v2}),)
)


def test_an_older_version_is_upcast_to_the_current_model() -> None:
    doc = _load(GOLDEN / "admin.change.v1" / "v1-full.json")
    v1_subject = doc["subject"]
    assert v1_subject.endswith(".v1")
    event = V2_REGISTRY.decode(v1_subject, json.dumps(doc["payload"]))
    assert isinstance(event, AdminChangedV2)
    assert event.actor == doc["payload"]["changed_by"]
    assert event.event_id == doc["payload"]["event_id"]
    current = V2_REGISTRY.decode(v1_subject.replace(".v1", ".v2"), event.model_dump_json().encode())
    assert current == event


def test_a_version_with_no_upcaster_is_refused() -> None:
    with pytest.raises(UnknownEventVersionError, match=r"reads v1, v2"):
        V2_REGISTRY.decode("admin.key.created.v3", b"{}")
    no_upcast = EventRegistry(
        (CatalogEntry(AdminChangedV2, "admin", "admin.{entity}.{action}.v2"),)
    )
    with pytest.raises(UnknownEventVersionError):
        no_upcast.decode("admin.key.created.v1", b"{}")


def test_the_shipped_v1_admin_model_still_reads_its_golden_payloads() -> None:
    for path in (GOLDEN / "admin.change.v1").glob("*.json"):
        doc = _load(path)
        assert isinstance(decode(doc["subject"], json.dumps(doc["payload"])), AdminChanged)


# --- KV states ------------------------------------------------------------------------


@pytest.mark.parametrize("bucket", sorted(STATE_TYPES))
def test_state_schema_equals_its_snapshot(bucket: str) -> None:
    cls = STATE_TYPES[bucket]
    path = schemas.snapshot_path(cls)
    assert path.exists(), f"no snapshot for {bucket}: run ./just snapshot-schemas"
    current = schemas.event_schema(cls)
    if path.read_text() != schemas.render(current):
        broken = schemas.breaking_changes(json.loads(path.read_text()), current)
        pytest.fail(f"{cls.__name__} drifted from {path}: {'; '.join(broken) or 'compatible'}")


@pytest.mark.parametrize("path", STATE_GOLDEN, ids=_id)
def test_golden_state_still_loads(path: Path) -> None:
    doc = _load(path)
    cls: type[BaseModel] = STATE_TYPES[doc["bucket"]]
    state = cls.model_validate_json(json.dumps(doc["payload"]))
    assert json.loads(state.model_dump_json()) == doc["payload"]


def test_every_bucket_has_a_golden_state() -> None:
    assert {p.parent.name for p in STATE_GOLDEN} == {f"kv.{b}" for b in STATE_TYPES}
