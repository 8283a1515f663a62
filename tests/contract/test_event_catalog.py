"""The checked-in AsyncAPI catalog is current and describes every event and consumer."""

from __future__ import annotations

import json
from pathlib import Path

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
    payload = doc["components"]["schemas"]["alerter-llm:Message:Payload"]
    refs = {r["$ref"].rsplit("/", 1)[1] for r in payload["anyOf"]}
    assert refs == {
        "LlmRequestStarted",
        "LlmRequestCompleted",
        "LlmRequestFailed",
        "DeploymentStateChanged",
    }
