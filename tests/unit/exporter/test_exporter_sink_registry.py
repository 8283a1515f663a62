"""The sink registry: a new sink is one module in `sinks/`; routing and delivery find it."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

import tollgate_exporter.sinks as sinks_package
from support.builders import completed
from tollgate_exporter import routing
from tollgate_exporter.service import Dispatcher
from tollgate_exporter.settings import ExporterSettings
from tollgate_exporter.sinks import SinkContext, SinkRegistry, SinkType, discover, registry
from tollgate_shared.config import parse_config

ECHO_MODULE = '''
"""A throwaway sink for the registry test: records what it is sent."""

from tollgate_exporter.destinations import Destination, digest, pick
from tollgate_exporter.sinks.base import BatchResult, SinkType

SENT = []


class EchoSink:
    kind = "echo"

    async def send(self, destination, items):
        SENT.append((destination.options["room"], [i.event.event_id for i in items]))
        return BatchResult()

    async def close(self):
        pass


def destination(name, vars_, env):
    room = pick(vars_, "echo_room") or env.get("ECHO_ROOM")
    if not room:
        return "echo needs echo_room"
    return Destination("echo", f"echo:{digest(room)}", f"echo {room}", {"room": room})


SINK = SinkType(
    kind="echo",
    names=("echo", "echo_alias"),
    destination=destination,
    create=lambda ctx: EchoSink(),
)
'''


@pytest.fixture
def echo_sink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`echo.py` dropped beside the real sinks (on the package's search path), nothing else."""
    (tmp_path / "echo.py").write_text(textwrap.dedent(ECHO_MODULE))
    monkeypatch.setattr(sinks_package, "__path__", [*sinks_package.__path__, str(tmp_path)])
    yield
    sys.modules.pop("tollgate_exporter.sinks.echo", None)


def test_the_registry_finds_every_sink_module() -> None:
    kinds = registry().kinds
    assert {"langfuse", "otel", "webhook"} <= set(kinds)
    assert list(kinds) == sorted(set(kinds))


async def test_a_new_module_is_a_new_sink_routed_and_delivered(echo_sink: None) -> None:
    found = discover()
    assert found.kinds == tuple(sorted({"echo", *registry().kinds}))
    litellm = parse_config(
        {"litellm_settings": {"callbacks": ["echo_alias", "langfuse"]}}
    ).litellm_settings
    router = routing.Router(litellm, {"ECHO_ROOM": "lobby"}, {}.get, {}.get, found)
    routes = router.for_call(None, None, "success")
    assert [r.destination.label for r in routes.routes] == ["echo lobby"]
    # langfuse without credentials is a problem; echo is not "an unknown sink"
    assert [p.callback for p in routes.problems] == ["langfuse"]

    settings = ExporterSettings(export_batch_wait_s=0.01)
    async with httpx.AsyncClient() as client:
        sinks = found.create(SinkContext(client, settings, litellm, {}))
    dispatcher = Dispatcher(settings, sinks, lambda record: asyncio.sleep(0), ack_wait_s=30)
    acked = asyncio.Event()

    async def ack() -> None:
        acked.set()

    msg = SimpleNamespace(
        subject="llm.request.completed.v1._",
        metadata=SimpleNamespace(sequence=SimpleNamespace(stream=1)),
        ack=ack,
    )
    event = completed()
    await dispatcher.submit(msg, event, routes.routes)  # type: ignore[arg-type]
    await asyncio.wait_for(acked.wait(), 2)
    await dispatcher.stop()
    sent = sys.modules["tollgate_exporter.sinks.echo"].SENT
    assert sent == [("lobby", [event.event_id])]


def test_unknown_names_are_reported_by_asking_the_registry() -> None:
    reason = registry().destination_for("not_a_vendor", {}, {}, {})
    assert isinstance(reason, str)
    assert reason.startswith("'not_a_vendor' is not a sink of the exporter (")
    assert "langfuse, " in reason
    assert registry().destination_for("prometheus", {}, {}, {}) is None


def test_two_sinks_cannot_claim_one_callback_name() -> None:
    def never(name: str, vars_: object, env: object) -> str:
        return "unused"

    a = SinkType("a", ("shared",), never, lambda ctx: None)  # type: ignore[arg-type,return-value]
    b = SinkType("b", ("shared",), never, lambda ctx: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="'shared' is served by both"):
        SinkRegistry([a, b])
