"""Which event class each subject carries, by exact version, and `decode` for every consumer.

The catalog lists every event family once: its class, producer, subject template
(with the version token, e.g. `llm.request.completed.v1.{team}`) and the older
versions it can still read. `decode(subject, data)` finds the family by the
subject's shape, then the version: the current one is validated as is, an older
one is upcast to the current model first, an unknown one is refused with
`UnknownEventVersionError` (so a v2 published beside v1 is never read as v1).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

import orjson
from pydantic import Field, ValidationError, create_model

from tollgate_shared import names
from tollgate_shared.events.admin import AdminChanged
from tollgate_shared.events.alert import AlertSent
from tollgate_shared.events.base import Event
from tollgate_shared.events.export import ExportDeadLettered
from tollgate_shared.events.ledger import LedgerDbError, LedgerSpendUpdated, LedgerTrackingFailed
from tollgate_shared.events.llm import (
    DeploymentStateChanged,
    LlmRequestCompleted,
    LlmRequestFailed,
    LlmRequestFinished,
    LlmRequestStarted,
)
from tollgate_shared.events.ops import ServiceCrashLoop

E = TypeVar("E", bound=Event)
# Turns the JSON object of one older version into the JSON object of the next one.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
_VERSION = re.compile(r"^v(\d+)$")


# --- NATS subject patterns ----------------------------------------------------


def _tokens(subject: str) -> list[str]:
    return subject.split(".")


def subject_matches(pattern: str, subject: str) -> bool:
    """Whether the literal `subject` is delivered to a subscription on `pattern`."""
    pat, sub = _tokens(pattern), _tokens(subject)
    for i, token in enumerate(pat):
        if token == ">":
            return len(sub) > i
        if i >= len(sub) or (token != "*" and token != sub[i]):
            return False
    return len(pat) == len(sub)


def pattern_within(inner: str, outer: str) -> bool:
    """Whether every subject matching `inner` also matches `outer`."""
    a, b = _tokens(inner), _tokens(outer)
    for i, token in enumerate(b):
        if token == ">":
            return len(a) > i
        if i >= len(a) or a[i] == ">":
            return False
        if token != "*" and (a[i] == "*" or a[i] != token):
            return False
    return len(a) == len(b)


def patterns_overlap(x: str, y: str) -> bool:
    """Whether some subject matches both patterns."""
    a, b = _tokens(x), _tokens(y)
    for i in range(max(len(a), len(b))):
        if i >= len(a) or i >= len(b):
            return False
        if ">" in (a[i], b[i]):
            return True
        if "*" not in (a[i], b[i]) and a[i] != b[i]:
            return False
    return True


# --- the catalog ----------------------------------------------------------------


@dataclass(frozen=True)
class CatalogEntry:
    """One event family: its current class, who publishes it and on which subjects.

    `upcasters` maps an older major version (e.g. 1 once v2 is current) to the
    function that lifts its payload one version up; `decode` chains them.
    """

    event: type[Event]
    producer: str
    # The subject with `{parameter}` placeholders, as a person reads it.
    template: str
    parameters: tuple[tuple[str, str], ...] = ()
    upcasters: Mapping[int, Upcaster] = field(default_factory=dict)
    # For the architecture map: the modules that build and publish it, and what the
    # producer writes alongside (its own tables, buckets).
    published_by: tuple[str, ...] = ()
    producer_writes: tuple[str, ...] = ()

    @property
    def pattern(self) -> str:
        """The template as a NATS wildcard pattern (`{x}` → `*`)."""
        return ".".join("*" if t.startswith("{") else t for t in _tokens(self.template))

    @cached_property  # read on every decode: worked out once
    def version_index(self) -> int:
        """Where in the subject's tokens the version (`v1`) stands."""
        for i, token in enumerate(_tokens(self.template)):
            if _VERSION.match(token):
                return i
        raise LookupError(f"{self.template!r} has no version token")

    @cached_property
    def version(self) -> int:
        return int(_tokens(self.template)[self.version_index][1:])

    @property
    def any_version_pattern(self) -> str:
        """The pattern with its version token wildcarded: the family's subjects, all versions."""
        tokens = _tokens(self.pattern)
        tokens[self.version_index] = "*"
        return ".".join(tokens)

    def readable_versions(self) -> tuple[int, ...]:
        return (*sorted(self.upcasters), self.version)


# The modules that build and publish each family (for the architecture map).
_INGRESS = ("tollgate_ingress.service", "tollgate_ingress.records", "tollgate_shared.publishing")
_LEDGER = ("tollgate_ledger.service", "tollgate_shared.publishing")

_TEAM = (
    "team",
    f"team id (`{names.NO_TEAM}` when the call has none); ids match {names.ID_PATTERN}",
)

CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        LlmRequestStarted,
        "ingress",
        f"{names.LLM_REQUEST_STARTED}.{{team}}",
        (_TEAM,),
        published_by=_INGRESS,
    ),
    CatalogEntry(
        LlmRequestCompleted,
        "ingress",
        f"{names.LLM_REQUEST_COMPLETED}.{{team}}",
        (_TEAM,),
        published_by=_INGRESS,
    ),
    CatalogEntry(
        LlmRequestFailed,
        "ingress",
        f"{names.LLM_REQUEST_FAILED}.{{team}}",
        (_TEAM,),
        published_by=_INGRESS,
    ),
    CatalogEntry(
        DeploymentStateChanged,
        "ingress",
        names.deployment_subject("{state}"),
        (("state", "cooled_down, recovered or fallback"),),
        published_by=("tollgate_ingress.routing", "tollgate_ingress.service"),
    ),
    CatalogEntry(
        AdminChanged,
        "admin",
        names.admin_subject("{entity}", "{action}"),
        (
            ("entity", "key, team, user or model"),
            (
                "action",
                "created, updated, deleted, rotated, blocked, unblocked, member_added, "
                "member_removed, callback_added, logging_disabled (see names.AdminSubject)",
            ),
        ),
        published_by=(
            "tollgate_admin.service",
            "tollgate_admin.uow",
            "tollgate_admin.propagation",
        ),
        producer_writes=(
            "admin.keys / teams / team_members / users / models",
            "admin.outbox",
            f"KV {names.KV_KEYS} / {names.KV_TEAMS} / {names.KV_USERS} / {names.KV_MODELS}",
        ),
    ),
    CatalogEntry(LedgerSpendUpdated, "ledger", names.LEDGER_SPEND_UPDATED, published_by=_LEDGER),
    CatalogEntry(
        LedgerTrackingFailed, "ledger", names.LEDGER_TRACKING_FAILED, published_by=_LEDGER
    ),
    CatalogEntry(LedgerDbError, "ledger", names.LEDGER_DB_ERROR, published_by=_LEDGER),
    CatalogEntry(
        AlertSent,
        "alerter",
        names.alert_sent_subject("{alert_type}"),
        (("alert_type", "LiteLLM's alert type, e.g. budget_alerts, llm_exceptions"),),
        published_by=("tollgate_alerter.delivery.dispatcher",),
    ),
    CatalogEntry(
        ExportDeadLettered,
        "exporter",
        names.EXPORT_DEAD_LETTER,
        published_by=("tollgate_exporter.service", "tollgate_exporter.dead_letters"),
    ),
    CatalogEntry(
        ServiceCrashLoop,
        "supervisor",
        names.ops_service_subject("{condition}"),
        (("condition", "crash_loop or recovered"),),
        published_by=(
            "tollgate_devstack.supervision",
            "tollgate_devstack.announce",
            "tollgate_shared.publishing",
        ),
    ),
)

EVENT_TYPES: tuple[type[Event], ...] = tuple(e.event for e in CATALOG)


def entry_for(cls: type[Event]) -> CatalogEntry:
    for entry in CATALOG:
        if entry.event is cls:
            return entry
    raise LookupError(f"{cls.__name__} is not in the catalog")


def stream_for(subject: str) -> names.StreamSpec:
    """The one stream that stores `subject` (a literal subject or a pattern)."""
    found = [s for s in names.STREAMS if any(pattern_within(subject, p) for p in s.subjects)]
    if len(found) != 1:
        raise LookupError(f"{subject!r} is stored by {len(found)} streams, not exactly one")
    return found[0]


def events_for_filter(filter_subject: str) -> list[type[Event]]:
    """The event classes a consumer filtering on `filter_subject` can receive."""
    return [e.event for e in CATALOG if patterns_overlap(e.pattern, filter_subject)]


# --- decoding ---------------------------------------------------------------------


class EventDecodeError(ValueError):
    """A message that can never become an event: unknown subject or version, bad JSON,
    wrong schema, or not the class the consumer expects. Consumers terminate it."""


class UnknownEventError(EventDecodeError):
    """No event family is published on this subject."""


class UnknownEventVersionError(EventDecodeError):
    """The family is known, this version of it is not (neither current nor upcastable)."""


def _unknown_version(subject: str, entry: CatalogEntry, version: int) -> str:
    readable = ", ".join(f"v{v}" for v in entry.readable_versions())
    return f"{subject}: version v{version} of {entry.event.__name__} is unknown (reads {readable})"


def _without_content(cls: type[LlmRequestFinished]) -> type[LlmRequestFinished]:
    # A validation alias no JSON key has: the parser skips these values instead of
    # building them, which halves decoding; every other field is validated as before.
    unread = "\x00unread"
    fields: dict[str, Any] = {
        "messages": (Any, Field(None, validation_alias=unread)),
        "response": (Any, Field(None, validation_alias=unread)),
        "proxy_server_request": (dict[str, Any] | None, Field(None, validation_alias=unread)),
        "model_parameters": (dict[str, Any], Field(default_factory=dict, validation_alias=unread)),
    }
    return create_model(f"{cls.__name__}WithoutContent", __base__=cls, **fields)


# The completed/failed events with their content left unread, for readers that never
# use it (the ledger when prompts are not stored, rebuild); still instances of the class.
WITHOUT_CONTENT: dict[type[Event], type[Event]] = {
    cls: _without_content(cls) for cls in (LlmRequestCompleted, LlmRequestFailed)
}


def _summary(exc: ValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "schema error"
    where = ".".join(str(p) for p in errors[0]["loc"]) or "payload"
    return f"{len(errors)} schema error(s), first at {where}: {errors[0]['msg']}"[:300]


class EventRegistry:
    """Subjects to event classes for one catalog; `decode` reads any message of it."""

    # Subjects seen, remembered (there are about teams times event types of them); past this
    # many the memo starts over, so a flood of distinct subjects cannot grow it.
    MEMO_LIMIT = 10_000

    def __init__(self, catalog: tuple[CatalogEntry, ...]) -> None:
        self.catalog = catalog
        self._memo: dict[str, tuple[CatalogEntry, int]] = {}

    def entry_for_subject(self, subject: str) -> tuple[CatalogEntry, int]:
        """The family a literal subject belongs to, and the version it carries."""
        found = self._memo.get(subject)
        if found is not None:
            return found
        for entry in self.catalog:
            if not subject_matches(entry.any_version_pattern, subject):
                continue
            version = _VERSION.match(_tokens(subject)[entry.version_index])
            if version is not None:
                if len(self._memo) >= self.MEMO_LIMIT:
                    self._memo.clear()
                found = self._memo[subject] = (entry, int(version.group(1)))
                return found
        raise UnknownEventError(f"no event is published on {subject!r}")

    def class_for_subject(self, subject: str) -> type[Event]:
        """The class `decode` returns for `subject` (its family's current class)."""
        entry, version = self.entry_for_subject(subject)
        if version not in entry.readable_versions():
            raise UnknownEventVersionError(_unknown_version(subject, entry, version))
        return entry.event

    def decode(
        self,
        subject: str,
        data: bytes | str,
        expect: type[E] | tuple[type[E], ...] = Event,  # type: ignore[assignment]
        *,
        content: bool = True,
    ) -> E:
        """The event a message carries, as its family's current model.

        Raises `EventDecodeError` (or a subclass) saying why not; `expect` narrows
        what the consumer accepts. With `content=False` the content fields of
        completed/failed calls are left unread (they come back empty).
        """
        entry, version = self.entry_for_subject(subject)
        cls = entry.event
        if not issubclass(cls, expect):
            raise EventDecodeError(
                f"{subject} carries {cls.__name__}, not what this consumer reads"
            )
        model = cls if content else WITHOUT_CONTENT.get(cls, cls)
        try:
            if version == entry.version:
                event = model.model_validate_json(data)
            elif version in entry.upcasters:
                event = model.model_validate(self._upcast(subject, entry, version, data))
            else:
                raise UnknownEventVersionError(_unknown_version(subject, entry, version))
        except ValidationError as exc:
            raise EventDecodeError(f"{subject}: {_summary(exc)}") from None
        except orjson.JSONDecodeError as exc:
            raise EventDecodeError(f"{subject}: not JSON ({exc})") from None
        return event  # type: ignore[return-value]

    @staticmethod
    def _upcast(
        subject: str, entry: CatalogEntry, version: int, data: bytes | str
    ) -> dict[str, Any]:
        payload = orjson.loads(data)
        if not isinstance(payload, dict):
            raise EventDecodeError(f"{subject}: the payload is not a JSON object")
        for step in range(version, entry.version):
            upcast = entry.upcasters.get(step)
            if upcast is None:
                raise UnknownEventVersionError(_unknown_version(subject, entry, step))
            payload = upcast(payload)
        out: dict[str, Any] = payload
        return out


REGISTRY = EventRegistry(CATALOG)
decode = REGISTRY.decode
event_class_for_subject = REGISTRY.class_for_subject
