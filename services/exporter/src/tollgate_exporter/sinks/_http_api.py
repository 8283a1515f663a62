"""What the sinks that post to a vendor's own HTTP ingestion API share: sending and a call's fields.

Each such sink renders a batch into one or more `Post`s (the vendor's documented
JSON, batched as far as its API allows) and `HttpApiSink` sends them with the
exporter's shared client:

- a `Post` that covers the whole batch and is refused (4xx other than 408/425/429)
  raises `PermanentError`, so the batch is dead-lettered at once with the vendor's
  answer; a `Post` covering only some items (per-call APIs) rejects just those;
- 408/425/429/5xx and transport errors raise `RetryableError` (with `Retry-After`);
  posts that already succeeded in an earlier attempt are not sent again;
- `Skip` drops an item the vendor does not take (a failure for a metering API)
  without sending it, and `Reject` dead-letters one with a reason (no customer id).

Content: items arrive already redacted when they must be (`content.redact`); the
`prompt` / `completion` helpers also put LiteLLM's placeholder where content was.

A vendor module describes its API once as an `HttpApi` — its settings (`key`,
`endpoint`, `option`: callback variable, environment names, default), how a request
authenticates, the path, what one call looks like (`payload`) and how many calls a
request carries — and exports `SINK = API.sink`. Reading the settings, identifying
and labelling the destination, filtering and batching the calls are done here; an
API that must look something up first (a project id, a token) or group the calls
gives its own `render`, built with `API.posts` and `API.headers`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from tollgate_exporter.content import REDACTED, output_message, standard_metadata, user_metadata
from tollgate_exporter.destinations import Destination, digest, safe_url
from tollgate_exporter.sinks.base import (
    BatchResult,
    ExportItem,
    PermanentError,
    SinkContext,
    SinkError,
    SinkType,
    request,
)
from tollgate_shared.events import LlmRequestFailed, LlmRequestFinished

# Remember this many delivered posts per sink, so a retried batch does not resend them.
_SENT_MEMORY = 20_000
# Requests of one batch in flight at once (per-call APIs post each call on its own).
POSTS_IN_FLIGHT = 8


@dataclass(frozen=True)
class Post:
    """One HTTP request to the vendor, carrying the items at `indices` of the batch.

    `body` is sent as JSON, or as it is when it is already bytes (protobuf).
    """

    url: str
    body: Any
    indices: tuple[int, ...]
    headers: Mapping[str, str] = field(default_factory=dict)
    method: str = "POST"
    content_type: str = "application/json"
    what: str = ""
    # Reads a 2xx answer: why the vendor refused the content after all (GraphQL errors).
    check: Callable[[httpx.Response], str | None] | None = None


@dataclass(frozen=True)
class Reject:
    """An item the sink cannot send (a required field is missing): dead-lettered alone."""

    index: int
    reason: str


@dataclass(frozen=True)
class Skip:
    """An item this vendor does not take (e.g. a failed call for a metering API)."""

    index: int


Part = Post | Reject | Skip


@dataclass
class RenderContext:
    """What a renderer may use besides the batch: the client and a per-destination cache."""

    client: httpx.AsyncClient
    sink: SinkContext
    cache: dict[str, Any]


Renderer = Callable[[RenderContext, Destination, Sequence[ExportItem]], Awaitable[list[Part]]]


class HttpApiSink:
    """Sends what a renderer makes of a batch; one instance per sink kind."""

    def __init__(self, kind: str, ctx: SinkContext, render: Renderer) -> None:
        self.kind = kind
        self._ctx = ctx
        self._render = render
        self._caches: dict[str, dict[str, Any]] = {}
        # post -> None (accepted) or the vendor's refusal, so a retried batch neither
        # resends what was accepted nor asks again about what was refused
        self._sent: OrderedDict[str, str | None] = OrderedDict()

    def _remember(self, mark: str, refusal: str | None = None) -> None:
        self._sent[mark] = refusal
        while len(self._sent) > _SENT_MEMORY:
            self._sent.popitem(last=False)

    async def send(self, destination: Destination, items: Sequence[ExportItem]) -> BatchResult:
        cache = self._caches.setdefault(destination.key, {})
        rctx = RenderContext(self._ctx.client, self._ctx, cache)
        result = BatchResult()
        posts: list[tuple[Post, str]] = []
        for part in await self._render(rctx, destination, items):
            if isinstance(part, Skip):
                continue
            if isinstance(part, Reject):
                result.rejected[part.index] = part.reason
                continue
            ids = [items[i].event.event_id for i in part.indices]
            mark = f"{destination.key}|{part.url}|{'|'.join(ids)}"
            if mark in self._sent:
                refused = self._sent[mark]
                if refused is not None:
                    result.rejected.update(dict.fromkeys(part.indices, refused))
                continue
            posts.append((part, mark))
        # Per-call APIs: a batch's posts go out a few at a time, not one after another.
        gate = asyncio.Semaphore(POSTS_IN_FLIGHT)

        async def deliver(part: Post, mark: str) -> None:
            async with gate:
                await self._post(part, mark, len(items), cache, result)

        outcomes = await asyncio.gather(*(deliver(p, m) for p, m in posts), return_exceptions=True)
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        # A refusal of the whole batch wins (dead-letter now); else retry what failed.
        for error in sorted(errors, key=lambda e: not isinstance(e, PermanentError)):
            raise error
        return result

    async def _post(
        self, part: Post, mark: str, batch_size: int, cache: dict[str, Any], result: BatchResult
    ) -> None:
        body = part.body
        if not isinstance(body, bytes):
            body = json.dumps(body, default=str).encode()
        headers = {**part.headers, "content-type": part.content_type}
        try:
            response = await request(
                self._ctx.client,
                part.method,
                part.url,
                part.what or self.kind,
                content=body,
                headers=headers,
            )
            refusal = part.check(response) if part.check else None
            if refusal:
                raise PermanentError(f"{part.what or self.kind} refused: {refusal}", 200)
        except PermanentError as exc:
            if exc.status_code in (401, 403):
                cache.clear()  # a token or project id fetched earlier may be stale
            if len(part.indices) == batch_size:
                raise
            for i in part.indices:
                result.rejected[i] = str(exc)
            self._remember(mark, str(exc))
            return
        self._remember(mark)

    async def close(self) -> None:
        """Nothing of its own to release (the HTTP client is shared)."""


async def cached(cache: dict[str, Any], key: str, fetch: Callable[[], Awaitable[Any]]) -> Any:
    """A value fetched once per destination (a project id, a token) and kept until a 401/403."""
    if key not in cache:
        cache[key] = await fetch()
    return cache[key]


def json_of(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise SinkError(f"{what} answered with unreadable JSON: {response.text[:200]}") from exc


class Credentials:
    """A vendor's settings from callback variables, else the environment (LiteLLM's order).

    The environment's credentials belong to the endpoint the environment names: when the
    callback variables name an endpoint (or any credential) of their own, secrets come
    from the callback variables only, so a team pointing at its own host never carries
    the global key there.
    """

    def __init__(
        self, vars_: Mapping[str, Any], env: Mapping[str, str], own: Sequence[str]
    ) -> None:
        self._vars = vars_
        self._env = env
        self.own = any(vars_.get(n) not in (None, "") for n in own)

    def get(self, var: str | None, *env_names: str) -> str | None:
        """A setting (endpoint, project): the callback's, else the environment's."""
        found = self._vars.get(var) if var else None
        if found not in (None, ""):
            return str(found)
        return next((self._env[n] for n in env_names if self._env.get(n)), None)

    def secret(self, var: str | None, *env_names: str) -> str | None:
        """A credential: the callback's; the environment's only when the callback has none."""
        found = self._vars.get(var) if var else None
        if found not in (None, ""):
            return str(found)
        if self.own:
            return None
        return next((self._env[n] for n in env_names if self._env.get(n)), None)


# --- a vendor's API, described ------------------------------------------------------

Options = Mapping[str, Any]
# One call as the vendor takes it, given the destination's options.
Payload = Callable[[ExportItem, Options], Any]
# Every call of a batch in one request, however large the batch.
ALL = sys.maxsize


@dataclass(frozen=True)
class Setting:
    """A destination setting, LiteLLM's way: callback variable `var`, else the first of
    `env` set, else `default`. A `secret` comes from the environment only when the
    callback names no endpoint or credential of its own (`Credentials`); an `endpoint`
    named by the callback is such a one; a `base` URL gets `https://` when it has no scheme.
    """

    var: str | None
    env: tuple[str, ...] = ()
    default: str | None = None
    secret: bool = False
    endpoint: bool = False
    base: bool = False
    required: bool = False


def key(var: str, *env: str) -> Setting:
    """A credential the destination cannot do without."""
    return Setting(var, env, secret=True, required=True)


def endpoint(var: str, *env: str, default: str | None = None, base: bool = True) -> Setting:
    """Where the API is (required when it has no default)."""
    return Setting(var, env, default, endpoint=True, base=base, required=default is None)


def option(
    var: str | None, *env: str, default: str | None = None, required: bool = False
) -> Setting:
    """Any other setting (a project, an event type); `var` None: the environment's only."""
    return Setting(var, env, default, required=required)


@dataclass(frozen=True)
class HttpApi:
    """A vendor's ingestion API: what differs from one vendor to the next, and nothing else.

    - `settings`: option name -> `Setting`, in order (the first missing required one is
      named by `missing`, a template with `{kind}`, `{var}`, `{env}` and `{envs}`);
      `finish` checks (or completes) the options and says why they are unusable;
    - `identity`: the options whose digest is the destination's key — dead letters' ids
      derive from it, so it never changes for a destination; `label`: what the health
      and dead-letter reports show (options, endpoints without credentials, or callables);
    - `auth`: the header and its value, a template of the options (`"Bearer {key}"`);
    - `path`: appended to the `url` option; `payload`: one call's body; `batch`: calls per
      request (1: each call alone; more: `envelope` wraps their payloads, a list if None);
    - `skip_failed`: the vendor takes successes only (metering); `refuse`: why a call
      cannot be sent (dead-lettered alone);
    - `render`: instead of the above, for an API that looks something up first.
    """

    kind: str
    settings: Mapping[str, Setting]
    auth: tuple[str, str] = ("authorization", "Bearer {key}")
    path: str = ""
    payload: Payload | None = None
    batch: int = 1
    envelope: Callable[[list[Any]], Any] | None = None
    names: tuple[str, ...] = ()
    identity: tuple[str, ...] = ("base", "key")
    label: tuple[str | Callable[[Options], str], ...] = ("base",)
    missing: str = "{kind} needs {var} (or {env})"
    finish: Callable[[dict[str, Any]], str | None] | None = None
    url: str = "base"
    method: str = "POST"
    content_type: str = "application/json"
    headers_extra: Mapping[str, str] = field(default_factory=dict)
    check: Callable[[httpx.Response], str | None] | None = None
    skip_failed: bool = False
    refuse: Callable[[ExportItem, Options], str | None] | None = None
    render: Renderer | None = None

    @property
    def sink(self) -> SinkType:
        return SinkType(
            kind=self.kind,
            names=self.names or (self.kind,),
            destination=self.destination,
            create=self.create,
        )

    def create(self, ctx: SinkContext) -> HttpApiSink:
        return HttpApiSink(self.kind, ctx, self.render or self.render_calls)

    def destination(
        self, name: str, vars_: Mapping[str, Any], env: Mapping[str, str]
    ) -> Destination | str:
        own = [s.var for s in self.settings.values() if s.var and (s.secret or s.endpoint)]
        c = Credentials(vars_, env, own)
        o: dict[str, Any] = {
            n: (c.secret if s.secret else c.get)(s.var, *s.env) or s.default
            for n, s in self.settings.items()
        }
        missing = [s for n, s in self.settings.items() if s.required and not o[n]]
        if missing:
            first_env = missing[0].env[0] if missing[0].env else ""
            envs = ", ".join(s.env[0] for s in missing if s.env)
            return self.missing.format(kind=self.kind, var=missing[0].var, env=first_env, envs=envs)
        for n, s in self.settings.items():
            if s.base and o[n]:
                o[n] = base_url(o[n])
        reason = self.finish(o) if self.finish else None
        if reason:
            return reason
        label = [self.kind]
        for part in self.label:
            if callable(part):
                label.append(part(o))
            else:
                shown = self.settings.get(part)
                label.append(safe_url(o[part]) if shown and shown.endpoint else str(o[part]))
        ident = digest(*(o[n] for n in self.identity))
        return Destination(self.kind, f"{self.kind}:{ident}", " ".join(label), o)

    def headers(self, o: Options) -> dict[str, str]:
        """The request's headers: the credential, and what the vendor always wants."""
        name, value = self.auth
        return {name: value.format_map(o), **self.headers_extra}

    def posts(
        self,
        o: Options,
        url: str,
        items: Sequence[ExportItem],
        indices: Sequence[int],
        payload: Payload | None = None,
        envelope: Callable[[list[Any]], Any] | None = None,
    ) -> list[Part]:
        """The requests carrying the calls at `indices` to `url`, `batch` calls each
        (`payload` and `envelope` in place of the API's own, where a call needs more)."""
        build = payload or self.payload
        wrap = envelope or self.envelope
        assert build is not None, f"{self.kind}: an HttpApi needs a payload or a render"
        out: list[Part] = []
        for lo in range(0, len(indices), self.batch):
            chunk = tuple(indices[lo : lo + self.batch])
            payloads = [build(items[i], o) for i in chunk]
            if wrap is not None:
                body = wrap(payloads)
            else:
                body = payloads[0] if self.batch == 1 else payloads
            out.append(
                Post(
                    url,
                    body,
                    chunk,
                    self.headers(o),
                    method=self.method,
                    content_type=self.content_type,
                    what=self.kind,
                    check=self.check,
                )
            )
        return out

    async def render_calls(
        self, ctx: RenderContext, dest: Destination, items: Sequence[ExportItem]
    ) -> list[Part]:
        """Skip or refuse the calls the vendor does not take; post the others."""
        o = dest.options
        parts: list[Part] = []
        ready: list[int] = []
        for i, item in enumerate(items):
            if self.skip_failed and failed(item):
                parts.append(Skip(i))
            elif self.refuse is not None and (reason := self.refuse(item, o)):
                parts.append(Reject(i, reason))
            else:
                ready.append(i)
        return parts + self.posts(o, f"{o[self.url]}{self.path}", items, ready)


# --- a call's fields, as every vendor needs them ------------------------------------


def iso(dt: datetime | None) -> str | None:
    """RFC 3339 in UTC with a `Z`, milliseconds kept."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def failed(item: ExportItem) -> bool:
    return isinstance(item.event, LlmRequestFailed)


def error_text(event: LlmRequestFinished) -> str | None:
    if isinstance(event, LlmRequestFailed):
        return f"{event.error_class}: {event.error_message}"
    return None


def prompt(item: ExportItem) -> Any:
    """The request's messages, or LiteLLM's placeholder when content is off."""
    return REDACTED if item.redacted else item.event.messages


def completion(item: ExportItem) -> Any:
    """The first choice's message (None for a failure), or the placeholder."""
    if failed(item):
        return None
    if item.redacted:
        return {"role": "assistant", "content": REDACTED}
    return output_message(item.event)


def response_body(item: ExportItem) -> Any:
    """The response document (already stripped of content when redacted)."""
    return item.event.response


def metadata(item: ExportItem) -> dict[str, Any]:
    """The caller's metadata plus LiteLLM's `user_api_key_*` fields and the call's ids."""
    event = item.event
    out: dict[str, Any] = {**user_metadata(event), **standard_metadata(event)}
    out.update(
        {
            "litellm_call_id": event.request_id,
            "requested_model": event.requested_model,
            "response_cost": float(event.spend),
            "session_id": event.session_id,
            "trace_id": event.trace_id,
            "tags": list(event.tags),
            "content_redacted": item.redacted,
        }
    )
    return {k: v for k, v in out.items() if v is not None}


def model_of(event: LlmRequestFinished) -> str:
    return event.model or event.requested_model


def latency_ms(event: LlmRequestFinished) -> int:
    return round(event.total_latency_ms)


def ttft_ms(event: LlmRequestFinished) -> int | None:
    if event.completion_start_time is None:
        return None
    return round((event.completion_start_time - event.start_time).total_seconds() * 1000)


def end_user(event: LlmRequestFinished) -> str | None:
    return event.end_user or event.user_id


def first(*values: Any) -> str | None:
    """The first value set (non-empty), as a string."""
    for v in values:
        if v not in (None, ""):
            return str(v)
    return None


def base_url(raw: str) -> str:
    raw = raw.rstrip("/")
    return raw if raw.startswith(("http://", "https://")) else f"https://{raw}"
