"""Decides where one LLM event goes: LiteLLM's key > team > default_team_settings > global.

Pure logic: settings, KV states and the process environment in, destinations out.

Precedence (the first level that is configured decides the whole set):

1. the team's `logging_disabled` (POST /team/{id}/disable_logging): nothing leaves,
   whatever the key or the config say;
2. the key's `metadata.logging` (present, even empty): exactly those callbacks;
3. the team's callbacks from the KV bucket (POST /team/{id}/callback), when non-empty;
4. the `litellm_settings.default_team_settings` entry for the team;
5. the global `callbacks` (both outcomes), `success_callback` and `failure_callback`.

A destination is a sink plus its endpoint and credentials, so two teams with two
projects of one sink are two destinations, and two teams sharing one project share one.
Which callback names exist, and what each needs, is the sinks' business: routing asks
the sink registry (`SinkCatalog`) and knows no sink by name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from tollgate_exporter.destinations import Destination, truthy
from tollgate_shared.config import LitellmSettings, resolve_env
from tollgate_shared.state import CallbackType, KeyState, LoggingCallback, TeamState

log = logging.getLogger(__name__)

Outcome = Literal["success", "failure"]
Source = Literal["key", "team", "default_team_settings", "global"]

# default_team_settings keys that are not callback variables.
_TEAM_SETTING_LISTS = ("callbacks", "success_callback", "failure_callback")


@dataclass(frozen=True)
class CallbackSpec:
    """One configured callback with the level it came from."""

    name: str
    type: CallbackType
    vars: Mapping[str, Any]
    source: Source

    def fires_on(self, outcome: Outcome) -> bool:
        return self.type in ("success_and_failure", outcome)


@dataclass(frozen=True)
class Resolution:
    """The callbacks that apply to one key/team, and which level decided them."""

    source: Source | Literal["disabled"]
    callbacks: tuple[CallbackSpec, ...]


@dataclass(frozen=True)
class Route:
    """One destination for one event, with whether content must be removed.

    `unusable` says why nothing may be sent to it (an `os.environ/` reference in its
    callback variables names an unset variable): its events are dead-lettered with
    that reason and /key/health reports it.
    """

    destination: Destination
    callback: str
    redact: bool
    unusable: str | None = None


@dataclass(frozen=True)
class Problem:
    """A configured callback that cannot be delivered (missing credentials, unknown name)."""

    callback: str
    source: Source
    reason: str


@dataclass(frozen=True)
class RouteSet:
    routes: tuple[Route, ...]
    problems: tuple[Problem, ...]
    resolution: Resolution


# --- resolution ----------------------------------------------------------------


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _from_lists(
    callbacks: Iterable[str],
    success: Iterable[str],
    failure: Iterable[str],
    vars_: Mapping[str, Any],
    source: Source,
) -> tuple[CallbackSpec, ...]:
    """LiteLLM's three lists, merged per name into one spec each."""
    kinds: dict[str, set[str]] = {}
    for name in callbacks:
        kinds.setdefault(name, set()).update(("success", "failure"))
    for name in success:
        kinds.setdefault(name, set()).add("success")
    for name in failure:
        kinds.setdefault(name, set()).add("failure")
    out = []
    for name, k in kinds.items():
        cb_type: CallbackType = (
            "success_and_failure" if len(k) == 2 else ("success" if "success" in k else "failure")
        )
        out.append(CallbackSpec(name, cb_type, dict(vars_), source))
    return tuple(out)


def _from_logging(items: Iterable[LoggingCallback], source: Source) -> tuple[CallbackSpec, ...]:
    return tuple(
        CallbackSpec(c.callback_name, c.callback_type, dict(c.callback_vars), source) for c in items
    )


def default_team_entry(settings: LitellmSettings, team_id: str | None) -> dict[str, Any] | None:
    if not team_id:
        return None
    for entry in settings.default_team_settings:
        if str(entry.get("team_id")) == team_id:
            return entry
    return None


def resolve_callbacks(
    settings: LitellmSettings,
    team_id: str | None,
    key: KeyState | None,
    team: TeamState | None,
) -> Resolution:
    """The callbacks for a call by `key` in `team_id`, by LiteLLM's precedence."""
    if team is not None and team.logging_disabled:
        return Resolution("disabled", ())
    if key is not None:
        try:
            key_logging = key.logging
        except ValueError:
            log.warning("key %s has unreadable metadata.logging; ignored", key.key_alias)
            key_logging = None
        if key_logging is not None:
            return Resolution("key", _from_logging(key_logging, "key"))
    if team is not None and team.logging:
        return Resolution("team", _from_logging(team.logging, "team"))
    entry = default_team_entry(settings, team_id)
    if entry is not None:
        vars_ = {k: v for k, v in entry.items() if k not in (*_TEAM_SETTING_LISTS, "team_id")}
        return Resolution(
            "default_team_settings",
            _from_lists(
                _as_list(entry.get("callbacks")),
                _as_list(entry.get("success_callback")),
                _as_list(entry.get("failure_callback")),
                vars_,
                "default_team_settings",
            ),
        )
    return Resolution(
        "global",
        _from_lists(
            settings.callbacks, settings.success_callback, settings.failure_callback, {}, "global"
        ),
    )


# --- destinations --------------------------------------------------------------


def callback_settings(settings: LitellmSettings) -> Mapping[str, Mapping[str, Any]]:
    """`litellm_settings.callback_settings`: per-callback-name options (LiteLLM's key)."""
    extra = settings.model_extra or {}
    raw = extra.get("callback_settings") or {}
    out = {str(k): v for k, v in raw.items() if isinstance(v, Mapping)}
    # LiteLLM's older spelling, `<name>_callback_params` (s3_callback_params), serves
    # `<name>` and its `<name>_v2`; `callback_settings.<name>` wins key by key.
    for key, params in extra.items():
        if key.endswith("_callback_params") and isinstance(params, Mapping):
            base = key.removesuffix("_callback_params")
            for name in (base, f"{base}_v2"):
                out[name] = {**params, **out.get(name, {})}
    return out


class SinkCatalog(Protocol):
    """What routing asks of the sinks (the registry in `sinks/`): it knows none by name."""

    def destination_for(
        self,
        name: str,
        vars_: Mapping[str, Any],
        named: Mapping[str, Any],
        env: Mapping[str, str],
    ) -> Destination | str | None:
        """The destination of callback `name`; why not (a reason); None if it is not ours."""
        ...


def resolve_references(value: Any, env: Mapping[str, str], path: str, unset: list[str]) -> Any:
    """`value` with every `os.environ/NAME` string replaced by NAME's value in `env`.

    The rule config.yaml follows (`tollgate_shared.config.resolve_env`), applied to the
    exporter's environment: a key's or team's `callback_vars` come from the KV buckets,
    not from config.yaml, so they are resolved here, when the destination is built. An
    unset variable is recorded in `unset` (as config.yaml's error spells it) and its
    value becomes a placeholder that is never sent; so is a reference to one of
    Tollgate's own secrets (`TOLLGATE_*`, the master and salt keys), which a callback
    could otherwise send to an endpoint its author controls.
    """
    return resolve_env(value, path, environ=env, unset=unset, protect=True)


def destination_for(
    spec: CallbackSpec,
    env: Mapping[str, str],
    named: Mapping[str, Mapping[str, Any]],
    sinks: SinkCatalog,
) -> tuple[Destination | str | None, str | None]:
    """The destination of one callback (a reason string when misconfigured; None if not
    ours), and why it is unusable when its variables name an unset environment variable.

    A callback's own variables win over `callback_settings.<name>`.
    """
    extra = named.get(spec.name, {})
    unset: list[str] = []
    vars_ = resolve_references({**extra, **spec.vars}, env, "callback_vars", unset)
    dest = sinks.destination_for(spec.name, vars_, extra, env)
    unusable = "; ".join(unset) or None
    if isinstance(dest, str) and unusable:
        return unusable, None
    return dest, unusable


def redaction(
    spec: CallbackSpec, settings: LitellmSettings, named: Mapping[str, Mapping[str, Any]]
) -> bool:
    """Whether content must be removed for this callback.

    `turn_off_message_logging` is the default; `callback_settings.<name>.message_logging:
    false` redacts that callback; a callback's own `callback_vars.turn_off_message_logging`
    (a key's or a team's) wins, so a key may turn content back on for itself only.
    """
    redact = settings.turn_off_message_logging
    message_logging = truthy(named.get(spec.name, {}).get("message_logging"))
    if message_logging is False:
        redact = True
    own = truthy(spec.vars.get("turn_off_message_logging"))
    if own is not None:
        redact = own
    return redact


def route(
    resolution: Resolution,
    outcome: Outcome | None,
    settings: LitellmSettings,
    env: Mapping[str, str],
    sinks: SinkCatalog,
) -> RouteSet:
    """Destinations for one outcome (None: both, as /key/health asks), de-duplicated."""
    named = callback_settings(settings)
    routes: dict[str, Route] = {}
    problems: list[Problem] = []
    for spec in resolution.callbacks:
        if outcome is not None and not spec.fires_on(outcome):
            continue
        dest, unusable = destination_for(spec, env, named, sinks)
        if dest is None:
            continue
        if isinstance(dest, str):
            problems.append(Problem(spec.name, spec.source, dest))
            continue
        redact = redaction(spec, settings, named)
        prev = routes.get(dest.key)
        # Two callbacks naming one destination: it gets the event once, redacted if either asks.
        if prev is not None:
            redact = redact or prev.redact
        routes[dest.key] = Route(dest, spec.name, redact, unusable)
    return RouteSet(tuple(routes.values()), tuple(problems), resolution)


class Router:
    """Routes events with the live key and team settings (lookups are in-memory KV views).

    A call's routes are remembered per key, team and outcome together with the key and
    team states they were worked out from; a KV view replaces a state's object when it
    changes, so a remembered answer is used only while both objects are still the ones
    it came from. Past `CACHE_LIMIT` entries the memory starts over.
    """

    CACHE_LIMIT = 10_000

    def __init__(
        self,
        settings: LitellmSettings,
        env: Mapping[str, str],
        key_lookup: Callable[[str], KeyState | None],
        team_lookup: Callable[[str], TeamState | None],
        sinks: SinkCatalog,
    ) -> None:
        self.settings = settings
        self._sinks = sinks
        self._env = dict(env)
        self._key = key_lookup
        self._team = team_lookup
        self._cache: dict[
            tuple[str | None, str | None, Outcome | None],
            tuple[KeyState | None, TeamState | None, RouteSet],
        ] = {}

    def _states(
        self, key_hash: str | None, team_id: str | None
    ) -> tuple[KeyState | None, str | None, TeamState | None]:
        key = self._key(key_hash) if key_hash else None
        team_id = team_id or (key.team_id if key else None)
        team = self._team(team_id) if team_id else None
        return key, team_id, team

    def for_call(
        self, key_hash: str | None, team_id: str | None, outcome: Outcome | None
    ) -> RouteSet:
        key, resolved_team_id, team = self._states(key_hash, team_id)
        memo = (key_hash, team_id, outcome)
        hit = self._cache.get(memo)
        if hit is not None and hit[0] is key and hit[1] is team:
            return hit[2]
        routes = route(
            resolve_callbacks(self.settings, resolved_team_id, key, team),
            outcome,
            self.settings,
            self._env,
            self._sinks,
        )
        if len(self._cache) >= self.CACHE_LIMIT:
            self._cache.clear()
        self._cache[memo] = (key, team, routes)
        return routes
