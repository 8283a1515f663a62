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
Langfuse projects are two destinations, and two teams sharing one project share one.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from tollgate_shared.config import LitellmSettings
from tollgate_shared.state import CallbackType, KeyState, LoggingCallback, TeamState

log = logging.getLogger(__name__)

SinkKind = Literal["langfuse", "otel", "webhook"]
Outcome = Literal["success", "failure"]
Source = Literal["key", "team", "default_team_settings", "global"]

DEFAULT_LANGFUSE_HOST = "https://cloud.langfuse.com"
DEFAULT_OTEL_SERVICE_NAME = "tollgate"

_SINK_ALIASES: dict[str, SinkKind] = {
    "langfuse": "langfuse",
    "langfuse_otel": "langfuse",
    "otel": "otel",
    "opentelemetry": "otel",
    "webhook": "webhook",
    "generic_api": "webhook",
    "generic": "webhook",
}
# Callbacks another Tollgate service handles (ingress serves /metrics): not ours, not errors.
_HANDLED_ELSEWHERE = frozenset({"prometheus"})
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
class Destination:
    """Where a sink delivers: identified by `key` (sink, endpoint, credentials digest)."""

    sink: SinkKind
    key: str
    label: str = field(compare=False)
    options: Mapping[str, Any] = field(compare=False, hash=False)


@dataclass(frozen=True)
class Route:
    """One destination for one event, with whether content must be removed."""

    destination: Destination
    callback: str
    redact: bool


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
    raw = (settings.model_extra or {}).get("callback_settings") or {}
    return {str(k): v for k, v in raw.items() if isinstance(v, Mapping)}


def _digest(*parts: Any) -> str:
    raw = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(raw).hexdigest()[:20]


def _pick(vars_: Mapping[str, Any], *names: str) -> str | None:
    for n in names:
        v = vars_.get(n)
        if v not in (None, ""):
            return str(v)
    return None


def _safe_url(url: str) -> str:
    """A URL without credentials or query string, for labels."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def parse_headers(raw: Any) -> dict[str, str]:
    """OTLP-style `k=v,k2=v2` (values URL-encoded), or a mapping."""
    if not raw:
        return {}
    if isinstance(raw, Mapping):
        return {str(k): str(v) for k, v in raw.items()}
    out: dict[str, str] = {}
    for part in str(raw).split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            out[unquote(k.strip())] = unquote(v.strip())
    return out


def _truthy(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "0", "no"):
        return False
    return None


def _langfuse(vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    public = _pick(vars_, "langfuse_public_key") or env.get("LANGFUSE_PUBLIC_KEY")
    secret = _pick(vars_, "langfuse_secret_key", "langfuse_secret") or env.get(
        "LANGFUSE_SECRET_KEY"
    )
    host = (
        _pick(vars_, "langfuse_host")
        or env.get("LANGFUSE_HOST")
        or env.get("LANGFUSE_BASE_URL")
        or DEFAULT_LANGFUSE_HOST
    ).rstrip("/")
    if not public or not secret:
        return "langfuse needs langfuse_public_key and langfuse_secret_key"
    if not host.startswith(("http://", "https://")):
        host = f"https://{host}"
    return Destination(
        "langfuse",
        f"langfuse:{_digest(host, public, secret)}",
        f"langfuse {_safe_url(host)} {public}",
        {"host": host, "public_key": public, "secret_key": secret},
    )


def _otel(vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    traces_endpoint = _pick(vars_, "otel_traces_endpoint") or env.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    endpoint = (
        _pick(vars_, "otel_endpoint")
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or env.get("OTEL_ENDPOINT")
    )
    exporter = (
        _pick(vars_, "otel_exporter")
        or env.get("OTEL_EXPORTER")
        or ("otlp_http" if (traces_endpoint or endpoint) else "console")
    ).lower()
    aliases = {
        "otlp": "otlp_http",
        "http": "otlp_http",
        "grpc": "otlp_grpc",
        "otlp_http": "otlp_http",
        "otlp_grpc": "otlp_grpc",
        "console": "console",
    }
    if exporter not in aliases:
        return f"OTEL_EXPORTER {exporter!r} is not one of otlp_http, otlp_grpc, console"
    exporter = aliases[exporter]
    headers = parse_headers(
        vars_.get("otel_headers")
        or env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
        or env.get("OTEL_EXPORTER_OTLP_HEADERS")
        or env.get("OTEL_HEADERS")
    )
    service = (
        _pick(vars_, "otel_service_name")
        or env.get("OTEL_SERVICE_NAME")
        or DEFAULT_OTEL_SERVICE_NAME
    )
    capture = _truthy(
        vars_.get(
            "otel_capture_message_content",
            env.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"),
        )
    )
    url: str | None = None
    if exporter == "otlp_http":
        if traces_endpoint:
            url = traces_endpoint
        elif endpoint:
            base = endpoint.rstrip("/")
            url = base if base.endswith("/v1/traces") else f"{base}/v1/traces"
        else:
            url = "http://localhost:4318/v1/traces"
    elif exporter == "otlp_grpc":
        url = traces_endpoint or endpoint or "http://localhost:4317"
    options = {
        "exporter": exporter,
        "url": url,
        "headers": headers,
        "service_name": service,
        "capture_content": capture is not False,
    }
    label_target = _safe_url(url) if url else "stdout"
    return Destination(
        "otel",
        f"otel:{_digest(exporter, url, headers, service, capture)}",
        f"otel {exporter} {label_target}",
        options,
    )


def _webhook(name: str, vars_: Mapping[str, Any], env: Mapping[str, str]) -> Destination | str:
    generic = name in ("generic_api", "generic")
    url = _pick(vars_, "webhook_url", "url") or (
        env.get("GENERIC_LOGGER_ENDPOINT") if generic else env.get("WEBHOOK_URL")
    )
    if not url:
        return f"{name} needs a webhook_url (or WEBHOOK_URL in the environment)"
    if not url.startswith(("http://", "https://")):
        return f"{name}: webhook_url must be an http(s) URL"
    secret = _pick(vars_, "webhook_secret", "secret") or env.get("WEBHOOK_SECRET")
    headers = parse_headers(
        vars_.get("webhook_headers")
        or (env.get("GENERIC_LOGGER_HEADERS") if generic else env.get("WEBHOOK_HEADERS"))
    )
    return Destination(
        "webhook",
        f"webhook:{_digest(name, url, secret, headers)}",
        f"webhook {name} {_safe_url(url)}",
        {"name": name, "url": url, "secret": secret, "headers": headers},
    )


def destination_for(
    spec: CallbackSpec,
    env: Mapping[str, str],
    named: Mapping[str, Mapping[str, Any]],
) -> Destination | str | None:
    """The destination of one callback; a reason string when misconfigured; None if not ours."""
    extra = named.get(spec.name, {})
    vars_ = {**extra, **spec.vars}
    kind = _SINK_ALIASES.get(spec.name)
    if kind is None and ("webhook_url" in vars_ or "url" in extra):
        kind = "webhook"
    if kind is None:
        if spec.name in _HANDLED_ELSEWHERE:
            return None
        return f"{spec.name!r} is not a sink of the exporter (langfuse, otel, webhook)"
    if kind == "langfuse":
        return _langfuse(vars_, env)
    if kind == "otel":
        return _otel(vars_, env)
    return _webhook(spec.name, vars_, env)


def redaction(
    spec: CallbackSpec, settings: LitellmSettings, named: Mapping[str, Mapping[str, Any]]
) -> bool:
    """Whether content must be removed for this callback.

    `turn_off_message_logging` is the default; `callback_settings.<name>.message_logging:
    false` redacts that callback; a callback's own `callback_vars.turn_off_message_logging`
    (a key's or a team's) wins, so a key may turn content back on for itself only.
    """
    redact = settings.turn_off_message_logging
    message_logging = _truthy(named.get(spec.name, {}).get("message_logging"))
    if message_logging is False:
        redact = True
    own = _truthy(spec.vars.get("turn_off_message_logging"))
    if own is not None:
        redact = own
    return redact


def route(
    resolution: Resolution,
    outcome: Outcome | None,
    settings: LitellmSettings,
    env: Mapping[str, str],
) -> RouteSet:
    """Destinations for one outcome (None: both, as /key/health asks), de-duplicated."""
    named = callback_settings(settings)
    routes: dict[str, Route] = {}
    problems: list[Problem] = []
    for spec in resolution.callbacks:
        if outcome is not None and not spec.fires_on(outcome):
            continue
        dest = destination_for(spec, env, named)
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
        routes[dest.key] = Route(dest, spec.name, redact)
    return RouteSet(tuple(routes.values()), tuple(problems), resolution)


class Router:
    """Routes events with the live key and team settings (lookups are in-memory KV views)."""

    def __init__(
        self,
        settings: LitellmSettings,
        env: Mapping[str, str],
        key_lookup: Callable[[str], KeyState | None],
        team_lookup: Callable[[str], TeamState | None],
    ) -> None:
        self.settings = settings
        self._env = dict(env)
        self._key = key_lookup
        self._team = team_lookup

    def resolution(self, key_hash: str | None, team_id: str | None) -> Resolution:
        key = self._key(key_hash) if key_hash else None
        team_id = team_id or (key.team_id if key else None)
        team = self._team(team_id) if team_id else None
        return resolve_callbacks(self.settings, team_id, key, team)

    def for_call(
        self, key_hash: str | None, team_id: str | None, outcome: Outcome | None
    ) -> RouteSet:
        return route(self.resolution(key_hash, team_id), outcome, self.settings, self._env)
