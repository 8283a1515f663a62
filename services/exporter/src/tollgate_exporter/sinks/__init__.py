"""The sink registry: every module of this package that defines `SINK` is a sink.

Modules are found with pkgutil when the registry is first asked for, so adding a
sink is adding one module (and its tests); nothing else names it. Routing asks
the registry which sink serves a callback name (`destination_for`), the exporter
asks it for the senders (`create`).
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from tollgate_exporter.destinations import Destination
from tollgate_exporter.sinks.base import (
    BatchResult,
    ClosableSink,
    ExportItem,
    PermanentError,
    RetryableError,
    Sink,
    SinkContext,
    SinkError,
    SinkType,
)

# Callback names another Tollgate service serves (ingress's /metrics): not ours, not errors.
HANDLED_ELSEWHERE = frozenset({"prometheus"})


class SinkRegistry:
    """The sinks by kind and by the callback names they serve."""

    def __init__(self, types: Iterable[SinkType]) -> None:
        self._by_kind: dict[str, SinkType] = {}
        self._by_name: dict[str, SinkType] = {}
        for t in types:
            if t.kind in self._by_kind:
                raise ValueError(f"two sinks of kind {t.kind!r}")
            self._by_kind[t.kind] = t
            for name in t.names:
                if name in self._by_name:
                    raise ValueError(
                        f"callback {name!r} is served by both {self._by_name[name].kind!r} "
                        f"and {t.kind!r}"
                    )
                self._by_name[name] = t

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(sorted(self._by_kind))

    def type_for(
        self, name: str, vars_: Mapping[str, Any], named: Mapping[str, Any]
    ) -> SinkType | None:
        """The sink serving callback `name`: by its registered names, else by a claim."""
        found = self._by_name.get(name)
        if found is not None:
            return found
        for t in self._by_kind.values():
            if t.claims is not None and t.claims(vars_, named):
                return t
        return None

    def destination_for(
        self,
        name: str,
        vars_: Mapping[str, Any],
        named: Mapping[str, Any],
        env: Mapping[str, str],
    ) -> Destination | str | None:
        """The destination of callback `name`; why not (a reason); None if it is not ours."""
        t = self.type_for(name, vars_, named)
        if t is None:
            if name in HANDLED_ELSEWHERE:
                return None
            return f"{name!r} is not a sink of the exporter ({', '.join(self.kinds)})"
        return t.destination(name, vars_, env)

    def create(self, ctx: SinkContext) -> dict[str, ClosableSink]:
        """One sender per sink kind, sharing the exporter's client."""
        return {kind: t.create(ctx) for kind, t in self._by_kind.items()}


def discover(package: str = __name__) -> SinkRegistry:
    """A registry of every `SINK` defined by a module of `package` (searched on its path)."""
    path = sys.modules[package].__path__
    types: list[SinkType] = []
    for info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        if info.name.startswith("_") or info.name == "base":
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        sink = getattr(module, "SINK", None)
        if isinstance(sink, SinkType):
            types.append(sink)
    return SinkRegistry(types)


@functools.cache
def registry() -> SinkRegistry:
    """The exporter's sinks, discovered once."""
    return discover()


__all__ = [
    "HANDLED_ELSEWHERE",
    "BatchResult",
    "ClosableSink",
    "ExportItem",
    "PermanentError",
    "RetryableError",
    "Sink",
    "SinkContext",
    "SinkError",
    "SinkRegistry",
    "SinkType",
    "discover",
    "registry",
]
