"""docs/architecture.md is generated from the catalog and consumer specs and cannot drift:
the file is current, and every module it names exists."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tollgate_shared import architecture, names
from tollgate_shared.events import CATALOG

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"

MODULES = sorted(
    {m for e in CATALOG for m in e.published_by}
    | {m for c in names.CONSUMERS for m in c.handled_by}
)


def test_checked_in_map_is_current() -> None:
    assert DOC.read_text() == architecture.render(), (
        "docs/architecture.md is stale: ./just architecture"
    )


@pytest.mark.parametrize("module", MODULES)
def test_every_module_the_map_names_exists(module: str) -> None:
    assert importlib.util.find_spec(module) is not None, f"{module} moved: update names/catalog"


def test_every_event_has_a_producer_path_and_every_consumer_a_handler_path() -> None:
    assert all(e.published_by for e in CATALOG)
    for spec in names.CONSUMERS:
        assert spec.handled_by, spec.name
        # The path starts at the service's transport edge.
        assert spec.handled_by[0] == f"tollgate_{spec.service}.subscribers", spec.name
        assert spec.writes, spec.name


@pytest.mark.parametrize("subject", [s.value for s in names.AdminSubject])
def test_every_admin_subject_is_greppable_in_the_map(subject: str) -> None:
    assert f"`{subject}`" in DOC.read_text()


def test_the_path_of_a_completed_call_is_readable() -> None:
    row = next(line for line in DOC.read_text().splitlines() if "`llm.request.completed" in line)
    for piece in (
        "tollgate_ingress.records",
        "ledger-spend: `tollgate_ledger.subscribers`",
        "`ledger.spend_logs`",
        "exporter-llm",
        "alerter-llm",
    ):
        assert piece in row
