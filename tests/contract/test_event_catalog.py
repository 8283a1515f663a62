"""The checked-in AsyncAPI catalog is current and describes every event and consumer."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from support.asyncapi_spec import asyncapi_schema
from tollgate_shared import catalog, names
from tollgate_shared.events import EVENT_TYPES

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"


def test_checked_in_catalog_is_current() -> None:
    assert DOC_PATH.exists(), "docs/asyncapi.json missing: run ./just asyncapi"
    assert DOC_PATH.read_text() == catalog.render(), (
        "docs/asyncapi.json is stale: run ./just asyncapi"
    )


def test_catalog_has_a_channel_per_event_and_per_consumer_filter() -> None:
    doc = json.loads(catalog.render())
    assert doc["asyncapi"] == "3.0.0"
    channels = doc["channels"]
    for cls in EVENT_TYPES:
        entry = catalog.entry_for(cls)
        channel = channels[cls.event_type]
        assert channel["address"] == entry.template
        assert doc["operations"][cls.event_type]["action"] == "send"
    addresses = {c["address"] for c in channels.values()}
    for spec in names.CONSUMERS:
        assert set(spec.filter_subjects) <= addresses, spec.name


def test_catalog_payloads_are_the_wire_schemas() -> None:
    schemas = json.loads(catalog.render())["components"]["schemas"]
    for cls in EVENT_TYPES:
        assert schemas[cls.__name__]["x-event-type"] == cls.event_type
    # Money is what publishers send: a decimal string, never a number.
    spend = schemas["LlmRequestCompleted"]["properties"]["spend"]
    assert spend["type"] == "string"
    assert spend["format"] == "decimal"
    assert schemas["SpendTotal"]["properties"]["spend"]["type"] == "string"


def test_consumer_payload_lists_every_event_it_can_receive() -> None:
    doc = json.loads(catalog.render())
    payload = doc["components"]["schemas"]["alerter-llm.Message.Payload"]
    refs = {r["$ref"].rsplit("/", 1)[1] for r in payload["anyOf"]}
    assert refs == {
        "LlmRequestStarted",
        "LlmRequestCompleted",
        "LlmRequestFailed",
        "DeploymentStateChanged",
    }


def test_catalog_is_valid_asyncapi_3() -> None:
    """Validated against the specification's own JSON Schema (npm `@asyncapi/specs`)."""
    schema = asyncapi_schema("3.0.0")
    if schema is None:
        pytest.skip("npm is not installed, so @asyncapi/specs cannot be fetched")
    doc = json.loads(DOC_PATH.read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}"[:300] for e in errors[:10])


def test_every_key_matches_the_specification_key_pattern() -> None:
    doc = json.loads(DOC_PATH.read_text())
    pattern = re.compile(r"^[A-Za-z0-9\.\-_]+$")
    keys = [*doc["channels"], *doc["operations"]]
    keys += [k for mapping in doc["components"].values() for k in mapping]
    assert [k for k in keys if not pattern.match(k)] == []


def test_every_ref_resolves() -> None:
    doc = json.loads(DOC_PATH.read_text())
    refs = re.findall(r'"\$ref": "(#/[^"]+)"', json.dumps(doc))
    assert refs
    for ref in refs:
        node: Any = doc
        for part in ref[2:].split("/"):
            node = node[part]


@pytest.mark.parametrize(
    ("channel", "parameter", "values"),
    [
        ("llm.request.completed.v1", "team", None),
        ("admin.change.v1", "entity", {"key", "team", "user", "model"}),
        ("admin.change.v1", "action", {"created", "rotated", "member_added"}),
        ("llm.deployment.state.v1", "state", {"cooled_down", "recovered", "fallback"}),
        ("alert.sent.v1", "alert_type", {"budget_alerts", "llm_exceptions"}),
    ],
)
def test_every_address_parameter_is_declared(
    channel: str, parameter: str, values: set[str] | None
) -> None:
    doc = json.loads(DOC_PATH.read_text())
    declared = doc["channels"][channel]["parameters"][parameter]
    assert declared["description"]
    if values is not None:
        assert values <= set(declared["enum"])
    for ch in doc["channels"].values():
        for name in re.findall(r"\{([^}]+)\}", ch["address"]):
            assert name in ch.get("parameters", {}), (ch["address"], name)
