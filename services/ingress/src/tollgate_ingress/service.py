"""One LLM call end to end: authenticate, route, call upstream, cost, and emit events.

The response never waits for JetStream: events and metrics are handed to the
publisher after the response (or the last streamed byte) has been sent.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import orjson

from tollgate_ingress.auth import (
    AuthError,
    Identity,
    authenticate,
    check_budgets,
    check_model_access,
)
from tollgate_ingress.limits import (
    LimiterUnavailableError,
    RateLimiter,
    Reservation,
    Ticket,
    to_nano,
)
from tollgate_ingress.metrics import HEALTHY, PARTIAL_OUTAGE, Recorder
from tollgate_ingress.parsing import (
    BadRequestError,
    ChatRequest,
    NotFoundError,
    parse_chat_request,
    parse_embedding_request,
)
from tollgate_ingress.pricing import cost_of
from tollgate_ingress.records import PRODUCER, Call, now_utc, refusal, without_vectors
from tollgate_ingress.refusals import RefusalSampler, exception_class
from tollgate_ingress.routing import Deployment, Router, StateChange, deployments_from
from tollgate_ingress.upstream import Stream, adapter_for, adapter_of, mock
from tollgate_ingress.upstream.http import UpstreamClient
from tollgate_ingress.upstream.openai import UpstreamError, UpstreamUnreachableError
from tollgate_ingress.usage import (
    StreamAccumulator,
    Usage,
    estimate_prompt_tokens,
    strip_unrequested_usage,
    usage_from,
)
from tollgate_shared import durations, names
from tollgate_shared.config import TollgateConfig
from tollgate_shared.credentials import presented_key
from tollgate_shared.errors import error_json
from tollgate_shared.events import DeploymentStateChanged, LlmRequestFinished, new_event_id
from tollgate_shared.kvview import KvView
from tollgate_shared.litellm_metrics import MetricsOptions
from tollgate_shared.publishing import EventPublisher
from tollgate_shared.state import (
    KeyState,
    ModelState,
    SpendState,
    TeamState,
    UserState,
    spend_kv_key,
)

log = logging.getLogger(__name__)

Failure = UpstreamError | UpstreamUnreachableError
R = TypeVar("R")
T = TypeVar("T")
# What a route makes of the caller's body: the chat request the call amounts to (given the
# caller and the call's id), at once or after I/O; raises the refusal.
Prepare = Callable[["Identity", str], "ChatRequest | Awaitable[ChatRequest]"]


@dataclass
class StateViews:
    keys: KvView[KeyState]
    teams: KvView[TeamState]
    users: KvView[UserState]
    models: KvView[ModelState]
    spend: KvView[SpendState]

    def all(self) -> list[KvView[Any]]:
        return [self.keys, self.teams, self.users, self.models, self.spend]


@dataclass(frozen=True)
class BudgetPolicy:
    """How budgets are guarded beyond the committed totals (see limits.py)."""

    # Admit calls of an entity with a budget when its total cannot be known (NATS or
    # Redis unreachable); by default such calls are refused (fail closed).
    fail_open: bool = False
    # How long a finished call's cost stays reserved: time for the ledger to commit it.
    hold_s: float = 15.0
    # Completion tokens reserved for a call that sets no max_tokens.
    reserve_output_tokens: int = 1024
    timezone: str | None = None


@dataclass
class Answer:
    """A finished non-streamed call: what to send and what to do after sending it
    (None for a refusal, which has nothing to do after)."""

    status: int
    body: bytes
    headers: dict[str, str]
    after: Callable[[], None] | None


@dataclass
class StreamAnswer:
    headers: dict[str, str]
    body: AsyncIterator[bytes]


def call_type_of(path: str) -> str:
    """LiteLLM's `call_type` for a route, for calls refused before their body is read."""
    if path.endswith("embeddings"):
        return "aembedding"
    if path.endswith("responses"):
        return "aresponses"
    if path.endswith("completions") and not path.endswith("chat/completions"):
        return "text_completion"
    return "acompletion"


class Gateway:
    def __init__(
        self,
        cfg: TollgateConfig,
        master_key: str | None,
        publisher: EventPublisher,
        client: UpstreamClient,
        views: StateViews,
        default_timeout_s: float,
        limiter: RateLimiter | None = None,
        budget: BudgetPolicy | None = None,
        spend_live: Callable[[], bool] | None = None,
        started_after_s: float = 1.0,
    ) -> None:
        self.limiter = limiter
        # Calls that run longer than this announce themselves (see `_announce`).
        self.started_after_s = started_after_s
        self._announcements: dict[str, asyncio.TimerHandle] = {}
        self.budget = budget or BudgetPolicy()
        self._tz = durations.budget_timezone(self.budget.timezone)
        # Whether the spend view is loaded and live (its NATS connection up).
        self.spend_live = spend_live or (lambda: True)
        # What each running call holds in Redis, given back when its event is emitted.
        self._tickets: dict[str, Ticket] = {}
        self._background: set[asyncio.Task[None]] = set()
        self.cfg = cfg
        self.master_key = master_key
        self.publisher = publisher
        self.client = client
        self.views = views
        self.router = Router(cfg.router_settings)
        self.metrics = Recorder(MetricsOptions.from_settings(cfg.litellm_settings))
        self.refusals = RefusalSampler()
        self.default_timeout_s = (
            cfg.router_settings.timeout or cfg.litellm_settings.request_timeout or default_timeout_s
        )
        self.refresh_models()

    # -- state ----------------------------------------------------------------
    def refresh_models(self) -> None:
        groups = deployments_from(
            self.cfg.model_list, self.views.models.items().values(), adapter_for
        )
        self.router.set_deployments(groups)
        self.metrics.deployments(d for group in groups.values() for d in group)

    def identify(self, headers: Mapping[str, str]) -> Identity:
        return authenticate(
            presented_key(headers.get),
            self.master_key,
            self.views.keys.items(),
            self.views.teams.items(),
            self.views.users.items(),
            datetime.now(UTC),
        )

    def visible_models(self, identity: Identity) -> list[str]:
        out = []
        for name in self.router.model_names():
            try:
                check_model_access(identity, name)
            except AuthError:
                continue
            out.append(name)
        return out

    def admit(self, identity: Identity, request: ChatRequest) -> None:
        """Refuse what this caller may not do: a model it may not use, a spent budget."""
        check_model_access(identity, request.model)
        if not self.router.group(request.model):
            raise BadRequestError(
                f"Invalid model name passed in model={request.model}. Call `/v1/models` to view "
                "available models for your key.",
                "model",
            )
        if identity.budgets and not self.budget.fail_open and not self.spend_live():
            raise AuthError(
                503,
                "Budgets cannot be checked now: spend totals are unavailable (NATS unreachable)",
                "budget_state_unknown",
            )
        check_budgets(identity, self.views.spend.items())

    # -- budget reservations ----------------------------------------------------
    def estimate_cost(self, request: ChatRequest) -> Decimal:
        """An upper estimate of a call's cost: its prompt, and max_tokens (or the configured
        reserve) of completion, at the dearest deployment of its model group."""
        body = request.upstream_body
        out = body.get("max_completion_tokens") or body.get("max_tokens")
        if not isinstance(out, int) or out < 0:
            out = 0 if request.call_type == "aembedding" else self.budget.reserve_output_tokens
        prompt = estimate_prompt_tokens(request.messages)
        prices = [cost_of(d.params, prompt, out).spend for d in self.router.group(request.model)]
        return max(prices, default=Decimal(0))

    def _period_end(self, entity: str, entity_id: str, now: datetime) -> float | None:
        views: dict[str, KvView[Any]] = {
            "key": self.views.keys,
            "team": self.views.teams,
            "user": self.views.users,
        }
        view = views.get(entity)
        state = view.get(entity_id) if view is not None else None
        period = durations.current_period(state.budget_duration, now, self._tz) if state else None
        return period[1].timestamp() if period else None

    def reservations(self, identity: Identity, request: ChatRequest) -> list[Reservation]:
        if not identity.budgets:
            return []
        now = datetime.now(UTC)
        spend = self.views.spend.items()
        amount = to_nano(self.estimate_cost(request))
        out = []
        for entity, entity_id, max_budget in identity.budgets:
            total = spend.get(spend_kv_key(entity, entity_id))
            current = total.current_spend(now) if total is not None else Decimal(0)
            out.append(
                Reservation(
                    entity,
                    entity_id,
                    to_nano(max_budget - current),
                    amount,
                    self._period_end(entity, entity_id, now),
                )
            )
        return out

    async def _take(self, identity: Identity, request: ChatRequest, member: str) -> None:
        """Count the call against rate limits, parallel slots and budgets (one round trip)."""
        if self.limiter is None:
            return
        try:
            ticket = await self.limiter.admit(
                identity, reserve=self.reservations(identity, request), member=member
            )
        except LimiterUnavailableError as exc:
            if not self.budget.fail_open:
                raise AuthError(
                    503,
                    "Budgets cannot be checked now: the reservation store (Redis) is unreachable",
                    "budget_state_unknown",
                ) from exc
            log.warning("budget reservations unavailable (%s); admitted (fail open)", exc)
            ticket = None
        if ticket is not None:
            self._tickets[member] = ticket

    def _give_back(self, request_id: str, event: LlmRequestFinished | None) -> None:
        """Release what the call holds in Redis: its slot, and its reservations become its
        cost, held until the ledger has had time to commit it (never past the budget period)."""
        ticket = self._tickets.pop(request_id, None)
        if ticket is None or self.limiter is None:
            return
        now = time.time()
        cost = to_nano(event.spend) if event is not None else 0
        hold = [
            min(now + self.budget.hold_s, r.period_end or math.inf) for r in ticket.reservations
        ]
        task = asyncio.get_running_loop().create_task(
            self.limiter.release(
                ticket,
                tokens=event.total_tokens if event is not None else 0,
                costs=[cost] * len(ticket.reservations),
                hold_until=hold,
            )
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- one call ---------------------------------------------------------------
    async def answer(
        self,
        path: str,
        raw: bytes,
        headers: Mapping[str, str],
        client_host: str | None,
        t_start: float,
    ) -> Answer | StreamAnswer:
        """One LLM call from its decoded parts; a refusal is an Answer with nothing to do after."""
        parse = parse_embedding_request if path.endswith("embeddings") else parse_chat_request
        opened = await self.open_call(
            path, raw, headers, client_host, t_start, lambda _identity, _id: parse(raw, headers)
        )
        if isinstance(opened, Answer):
            return opened
        call = opened
        go = self.stream if call.request.stream else self.complete
        return await self.run(call, go(call, t_start))

    async def open_call(
        self,
        path: str,
        raw: bytes,
        headers: Mapping[str, str],
        client_host: str | None,
        t_start: float,
        prepare: Prepare,
    ) -> Call | Answer:
        """Identify the caller, read its request (`prepare`: the chat request the call
        amounts to), admit it and take its limits: the call record, or the refusal."""
        start_time = now_utc()
        request_id = new_event_id()
        identity: Identity | None = None
        req: ChatRequest | None = None
        try:
            identity = self.identify(headers)
            prepared = prepare(identity, request_id)
            req = prepared if isinstance(prepared, ChatRequest) else await prepared
            self.admit(identity, req)
            await self._take(identity, req, request_id)
        except (AuthError, BadRequestError, NotFoundError) as exc:
            status, body, code = _refusal_of(exc)
            return self.refuse(
                path, raw, headers, client_host, t_start, start_time, request_id,
                identity, req, status, body, exc.message, code,
            )  # fmt: skip
        return Call(
            request_id=request_id,
            identity=identity,
            request=req,
            start_time=start_time,
            requester_ip=client_host,
            user_agent=headers.get("user-agent"),
            traceparent=headers.get("traceparent"),
            tracestate=headers.get("tracestate"),
        )

    async def run(self, call: Call, going: Awaitable[R]) -> R:
        """Await an admitted call's answer; a bug gives back what the call holds."""
        try:
            return await going
        except BaseException:
            self._give_back(call.request_id, None)  # a bug, not a finished call: nothing to cost
            raise

    def refuse(
        self,
        path: str,
        raw: bytes,
        headers: Mapping[str, str],
        client_host: str | None,
        t_start: float,
        start_time: datetime,
        request_id: str,
        identity: Identity | None,
        req: ChatRequest | None,
        status: int,
        body: bytes,
        message: str,
        code: str | None,
    ) -> Answer:
        """A refusal is a failed call: the client gets its error at once; the event (sampled
        when identical refusals repeat) and the counters (always) follow."""
        elapsed = time.perf_counter() - t_start

        def after() -> None:
            requested = req.model if req is not None else _model_of(raw)
            event = refusal(
                request_id=request_id,
                start_time=start_time,
                elapsed_s=elapsed,
                call_type=call_type_of(path),
                identity=identity,
                request=req,
                requested_model=requested,
                error_class=exception_class(status, code),
                error_message=message,
                error_code=code,
                status_code=status,
                requester_ip=client_host,
                user_agent=headers.get("user-agent"),
                traceparent=headers.get("traceparent"),
            )
            try:
                self.metrics.record(event)
            except Exception:  # metrics must never fail a call
                log.exception("recording metrics failed")
            key = (
                client_host,
                identity.api_key_hash if identity else None,
                status,
                code,
                requested,
            )
            skipped = self.refusals.admit(key, time.monotonic())
            if skipped is None:
                return
            if skipped:
                event = event.model_copy(
                    update={
                        "warnings": [
                            f"{skipped} identical refusals since the last one logged were "
                            "counted in metrics but not logged"
                        ]
                    }
                )
            self.publisher.emit(event)

        # The refusal's id, as on any answer: it names the failure row (when logged).
        return Answer(status, body, {names.HDR_CALL_ID: request_id}, after)

    # -- events -----------------------------------------------------------------
    def _emit_router(self, change: StateChange | None, request_id: str | None = None) -> None:
        if change is None:
            return
        d = change.deployment
        self.publisher.emit(
            DeploymentStateChanged(
                producer=PRODUCER,
                state=change.state,
                model_group=d.model_name,
                model_id=d.model_id,
                api_base=d.params.api_base,
                region=d.region,
                reason=change.reason,
                cooldown_s=change.cooldown_s,
                request_id=request_id,
            )
        )

    def _announce(self, call: Call) -> None:
        """Emit the call's started event if it is still running after `started_after_s`: the
        alerter needs it only to time out a hanging call (from the event's own start time),
        so a call that ends sooner sends its completed or failed event alone."""
        if self.started_after_s <= 0:
            self.publisher.emit(call.started())
            return

        def announce() -> None:
            self._announcements.pop(call.request_id, None)
            self.publisher.emit(call.started())

        self._announcements[call.request_id] = asyncio.get_running_loop().call_later(
            self.started_after_s, announce
        )

    def _finish(self, event: LlmRequestFinished, call: Call) -> None:
        announcement = self._announcements.pop(call.request_id, None)
        if announcement is not None:
            announcement.cancel()
        self.publisher.emit(event)
        self._give_back(call.request_id, event)
        try:
            self.metrics.record(event)
        except Exception:  # metrics must never fail a call
            log.exception("recording metrics failed")

    # -- attempts -----------------------------------------------------------------
    def _timeout(self, dep: Deployment, stream: bool) -> float:
        p = dep.params
        return (p.stream_timeout if stream else None) or p.timeout or self.default_timeout_s

    async def _attempt(
        self, call: Call, open_one: Callable[[Deployment], Awaitable[Any]]
    ) -> tuple[Deployment, Any, float]:
        """Try deployments (retries within the group, then fallbacks) until one answers."""
        groups = [call.request.model, *self.router.fallbacks_for(call.request.model)]
        retries = self.router.settings.num_retries
        last: Failure | None = None
        primary: Failure | None = None
        for gi, group in enumerate(groups):
            tried: set[str] = set()
            for _ in range(retries + 1 if gi == 0 else 1):
                dep = self.router.pick(group, time.monotonic(), frozenset(tried))
                if dep is None:
                    break
                tried.add(dep.model_id)
                call.deployment = dep
                if gi > 0:
                    self.publisher.emit(
                        DeploymentStateChanged(
                            producer=PRODUCER,
                            state="fallback",
                            model_group=call.request.model,
                            model_id=dep.model_id,
                            api_base=dep.params.api_base,
                            region=dep.region,
                            fallback_model_group=group,
                            request_id=call.request_id,
                            reason=last.message if last else None,
                        )
                    )
                t0 = time.perf_counter()
                try:
                    result = await open_one(dep)
                except (UpstreamError, UpstreamUnreachableError) as exc:
                    last = exc
                    if gi == 0:
                        primary = exc
                    elif primary is not None:
                        self._fallback_metric(call, group, primary, ok=False)
                    change = self.router.record_failure(dep, exc.status, time.monotonic())
                    if change is not None and change.state == "cooled_down":
                        self.metrics.cooled_down(dep, exc.status)
                    else:
                        self.metrics.deployment_state(dep, PARTIAL_OUTAGE)
                    self._emit_router(change, call.request_id)
                    if isinstance(exc, UpstreamError) and exc.status < 500 and exc.status != 429:
                        raise  # the request itself is wrong: another deployment won't help
                    continue
                self._emit_router(
                    self.router.record_success(dep, time.monotonic()), call.request_id
                )
                self.metrics.deployment_state(dep, HEALTHY)
                if gi > 0 and primary is not None:
                    self._fallback_metric(call, group, primary, ok=True)
                return dep, result, t0
        assert last is not None
        raise last

    def _fallback_metric(self, call: Call, group: str, primary: Failure, ok: bool) -> None:
        try:
            self.metrics.fallback(call, group, primary.status, _error_class(primary), ok)
        except Exception:  # metrics must never fail a call
            log.exception("recording metrics failed")

    def _failed(
        self, call: Call, exc: Failure, t_start: float, upstream_s: float | None
    ) -> LlmRequestFinished:
        if isinstance(exc, UpstreamError):
            return call.failed(
                elapsed_s=time.perf_counter() - t_start,
                upstream_s=upstream_s,
                error_class=_error_class(exc),
                error_message=exc.message,
                error_code=exc.code,
                status_code=exc.status,
                upstream_status_code=exc.status,
                upstream_reachable=True,
                response=exc.body,
            )
        return call.failed(
            elapsed_s=time.perf_counter() - t_start,
            upstream_s=upstream_s,
            error_class=_error_class(exc),
            error_message=exc.message,
            status_code=exc.status,
            upstream_status_code=None,
            upstream_reachable=False,
        )

    def _cost(self, call: Call, usage: Usage) -> tuple[Decimal, list[str]]:
        assert call.deployment is not None
        cost = cost_of(
            call.deployment.params,
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.cached_tokens,
            usage.cache_creation_tokens,
        )
        return cost.spend, [cost.warning] if cost.warning else []

    def _headers(self, call: Call, spend: Decimal | None) -> dict[str, str]:
        h = {names.HDR_CALL_ID: call.request_id}
        if spend is not None:
            h[names.HDR_RESPONSE_COST] = format(spend, "f")
        if call.deployment is not None:
            h["x-litellm-model-id"] = call.deployment.model_id
            if call.deployment.params.api_base:
                h["x-litellm-model-api-base"] = call.deployment.params.api_base
        return h

    def _estimated_cost(
        self, call: Call, completion_tokens: int, seen: Usage | None = None
    ) -> tuple[Usage, Decimal, bool]:
        """The usage the upstream reported, else an estimate from the prompt and the text
        streamed so far (marked as estimated), and its cost: what the upstream bills for a
        call the client gave up on."""
        if seen is not None:
            usage, estimated = seen, False
        else:
            prompt = estimate_prompt_tokens(call.request.messages)
            usage = Usage(prompt, completion_tokens, prompt + completion_tokens)
            estimated = True
        spend = self._cost(call, usage)[0] if call.deployment is not None else Decimal(0)
        return usage, spend, estimated

    def _cancelled(self, call: Call, t_start: float) -> LlmRequestFinished:
        """The call was cancelled while waiting for the upstream (the client went away, or
        ingress is shutting down): a failed call, costed with its prompt as estimated."""
        usage, spend, estimated = self._estimated_cost(call, 0)
        return call.failed(
            elapsed_s=time.perf_counter() - t_start,
            upstream_s=None,
            error_class="Cancelled",
            error_message="the call was cancelled before the upstream answered "
            "(client disconnected or ingress shutting down)",
            status_code=499,
            upstream_status_code=None,
            upstream_reachable=True,
            usage=usage,
            spend=spend,
            usage_estimated=estimated,
            warnings=["tokens estimated from the prompt: the upstream may bill the call"],
        )

    def _refused(self, call: Call, exc: Failure, t_start: float) -> Answer:
        """No deployment answered: the client gets OpenAI's error, the stream a failed event."""
        event = self._failed(call, exc, t_start, None)
        body = error_json(exc.message, exc.status, code=getattr(exc, "code", None) or None)
        return Answer(
            exc.status, body, self._headers(call, None), lambda: self._finish(event, call)
        )

    # -- opening and finishing ------------------------------------------------------------
    async def attempt(
        self, call: Call, t_start: float, one: Callable[[Deployment], Awaitable[T]]
    ) -> tuple[Deployment, T, float] | Answer:
        """Announce the call and try deployments with `one`: what answered, or the refusal
        when none did (a cancelled call is recorded, then re-raised)."""
        self._announce(call)
        try:
            return await self._attempt(call, one)
        except (UpstreamError, UpstreamUnreachableError) as exc:
            return self._refused(call, exc, t_start)
        except asyncio.CancelledError:
            self._finish(self._cancelled(call, t_start), call)
            raise

    def answered(
        self,
        call: Call,
        t_start: float,
        upstream_s: float,
        usage: Usage,
        response: Any,
        logged: Any = None,
    ) -> Answer:
        """A non-streamed answer: `response` to the client, `logged` (default: the same) in the
        completed event emitted after it is sent."""
        spend, warnings = self._cost(call, usage)
        elapsed = time.perf_counter() - t_start

        def after() -> None:
            self._finish(
                call.completed(
                    elapsed_s=elapsed,
                    upstream_s=upstream_s,
                    first_token_s=None,
                    usage=usage,
                    spend=spend,
                    response=response if logged is None else logged,
                    warnings=warnings,
                ),
                call,
            )

        return Answer(200, orjson.dumps(response), self._headers(call, spend), after)

    def stream_completed(
        self,
        call: Call,
        t_start: float,
        t_up: float,
        first: float | None,
        seen: Usage | None,
        response: Any,
    ) -> LlmRequestFinished:
        """A stream that ended: costed from the usage it carried (0, and a warning, if none)."""
        usage = seen or Usage()
        spend, warnings = self._cost(call, usage)
        if seen is None:
            warnings.append("upstream sent no usage for this stream; tokens recorded as 0")
        now = time.perf_counter()
        return call.completed(
            elapsed_s=now - t_start,
            upstream_s=now - t_up,
            first_token_s=(first - t_start) if first is not None else None,
            usage=usage,
            spend=spend,
            response=response,
            warnings=warnings,
        )

    def stream_cut(
        self, call: Call, exc: Failure, t_start: float, t_up: float, completion_tokens: int,
        seen: Usage | None, response: Any = None,
    ) -> LlmRequestFinished:  # fmt: skip
        """A stream the upstream broke off: failed, with the usage seen so far."""
        usage, spend, estimated = self._estimated_cost(call, completion_tokens, seen)
        event = self._failed(call, exc, t_start, time.perf_counter() - t_up)
        return event.model_copy(
            update={
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
                "cached_tokens": usage.cached_tokens,
                "reasoning_tokens": usage.reasoning_tokens,
                "spend": spend,
                "usage_estimated": estimated,
                # The partial answer, else what the upstream's error said.
                "response": event.response if response is None else response,
            }
        )

    def stream_abandoned(
        self, call: Call, t_start: float, t_up: float, completion_tokens: int,
        seen: Usage | None, response: Any,
    ) -> LlmRequestFinished:  # fmt: skip
        """The client went away mid-stream: the upstream bills anyway."""
        usage, spend, estimated = self._estimated_cost(call, completion_tokens, seen)
        return call.failed(
            elapsed_s=time.perf_counter() - t_start,
            upstream_s=time.perf_counter() - t_up,
            error_class="ClientDisconnected",
            error_message="client closed the connection before the stream ended",
            status_code=499,
            upstream_status_code=None,
            upstream_reachable=True,
            response=response,
            usage=usage,
            spend=spend,
            usage_estimated=estimated,
            warnings=["tokens estimated from the prompt and the text streamed so far"]
            if estimated
            else [],
        )

    # -- non-streamed ---------------------------------------------------------------
    def chat_one(
        self, call: Call, path: str = "/chat/completions"
    ) -> Callable[[Deployment], Awaitable[dict[str, Any]]]:
        """One attempt of a plain call: the mock's answer, or the upstream's at `path`."""
        req = call.request
        embedding = req.call_type == "aembedding"

        async def one(dep: Deployment) -> dict[str, Any]:
            canned = canned_of(req, dep)
            if canned is not None:
                if embedding:
                    return mock.mock_embedding(req.model, req.messages)
                return mock.mock_completion(
                    req.model,
                    str(canned),
                    req.messages,
                    f"chatcmpl-{call.request_id}",
                    int(time.time()),
                )
            return await adapter_of(dep).chat(
                self.client,
                dep,
                req.upstream_body,
                self._timeout(dep, False),
                call.traceparent,
                "/embeddings" if embedding else path,
            )

        return one

    async def complete(self, call: Call, t_start: float) -> Answer:
        opened = await self.attempt(call, t_start, self.chat_one(call))
        if isinstance(opened, Answer):
            return opened
        _dep, data, t_up = opened
        upstream_s = time.perf_counter() - t_up
        logged = without_vectors(data) if call.request.call_type == "aembedding" else None
        return self.answered(call, t_start, upstream_s, usage_from(data.get("usage")), data, logged)

    # -- streamed -------------------------------------------------------------------
    def stream_one(self, call: Call) -> Callable[[Deployment], Awaitable[Stream | mock.MockStream]]:
        """One attempt of a streamed chat call: the mock's chunks, or the upstream's stream."""
        req = call.request

        async def one(dep: Deployment) -> Stream | mock.MockStream:
            canned = canned_of(req, dep)
            if canned is not None:
                return mock.MockStream(
                    mock.mock_chunks(
                        mock.mock_completion(
                            req.model,
                            str(canned),
                            req.messages,
                            f"chatcmpl-{call.request_id}",
                            int(time.time()),
                        )
                    )
                )
            s = adapter_of(dep).stream(
                self.client, dep, req.upstream_body, self._timeout(dep, True), call.traceparent
            )
            await s.open()
            return s

        return one

    async def stream(
        self, call: Call, t_start: float, shape: StreamShape | None = None
    ) -> Answer | StreamAnswer:
        """A streamed chat call, written to the client as `shape` says (OpenAI's chat SSE
        by default)."""
        opened = await self.attempt(call, t_start, self.stream_one(call))
        if isinstance(opened, Answer):
            return opened
        _dep, source, t_up = opened
        shape = shape or StreamShape(call.request.client_wants_usage)
        return StreamAnswer(
            self._headers(call, None), self.relay(call, source, t_start, t_up, shape)
        )

    async def relay(
        self,
        call: Call,
        source: Stream | mock.MockStream,
        t_start: float,
        t_up: float,
        shape: StreamShape,
    ) -> AsyncIterator[bytes]:
        """Relay a chat stream in `shape`, and record the call when it ends, is cut by the
        upstream, or is abandoned by the client."""
        acc = StreamAccumulator()
        first: float | None = None
        event: LlmRequestFinished | None = None
        try:
            for b in shape.start():
                yield b
            ended = False
            async for chunk in source.chunks():
                if chunk is None:
                    ended = True
                    break
                if first is None:
                    first = time.perf_counter()
                acc.feed(chunk)
                for b in shape.feed(chunk):
                    yield b
            if shape.must_end and not ended and not acc.finish_reasons:
                raise UpstreamUnreachableError(
                    "the upstream closed the stream before it ended", timed_out=False
                )
            for b in shape.finish():
                yield b
            response = shape.response(acc, acc.usage or Usage())
            await shape.keep(response)
            event = self.stream_completed(call, t_start, t_up, first, acc.usage, response)
            for b in shape.completed(response):
                yield b
        except (UpstreamError, UpstreamUnreachableError) as exc:
            partial, out = shape.error(acc, exc)
            event = self.stream_cut(
                call, exc, t_start, t_up, acc.estimated_completion_tokens(), acc.usage, partial
            )
            yield out
        finally:
            await source.close()
            if event is None:
                event = self.stream_abandoned(
                    call, t_start, t_up, acc.estimated_completion_tokens(), acc.usage,
                    shape.partial(acc),
                )  # fmt: skip
            self._finish(event, call)


class StreamShape:
    """How a relayed chat stream reaches the client: OpenAI's chat SSE here; the Responses and
    text completion bridges override the parts they write differently."""

    # Whether a stream closed without a finish reason or [DONE] counts as cut by the upstream.
    must_end = False

    def __init__(self, wants_usage: bool = True) -> None:
        self.wants_usage = wants_usage

    def start(self) -> list[bytes]:
        return []

    def feed(self, chunk: dict[str, Any]) -> list[bytes]:
        out = chunk if self.wants_usage else strip_unrequested_usage(chunk)
        return [] if out is None else [b"data: " + orjson.dumps(out) + b"\n\n"]

    def finish(self) -> list[bytes]:
        return [b"data: [DONE]\n\n"]

    def response(self, acc: StreamAccumulator, usage: Usage) -> Any:
        """The whole answer, as the completed event records it."""
        return acc.response()

    async def keep(self, response: Any) -> None:
        """Anything to do with the whole answer before the stream's last event goes out."""

    def completed(self, response: Any) -> list[bytes]:
        return []

    def error(self, acc: StreamAccumulator, exc: Failure) -> tuple[Any, bytes]:
        """The cut stream's partial answer (for the event) and the error sent to the client."""
        return None, b"data: " + error_json(exc.message, exc.status) + b"\n\n"

    def partial(self, acc: StreamAccumulator) -> Any:
        """What an abandoned stream had answered."""
        return acc.response()


def canned_of(req: ChatRequest, dep: Deployment) -> Any:
    """The mock answer a call gets instead of the upstream's (request's, else deployment's)."""
    return req.mock_response if req.mock_response is not None else dep.params.mock_response


def _refusal_of(exc: AuthError | BadRequestError | NotFoundError) -> tuple[int, bytes, str | None]:
    """A refused request's status, OpenAI error body and code."""
    if isinstance(exc, BadRequestError):
        return 400, error_json(exc.message, 400, param=exc.param), None
    if isinstance(exc, NotFoundError):
        return 404, exc.body(), exc.code
    return exc.status, exc.body(), exc.code


def _error_class(exc: Failure) -> str:
    """LiteLLM's exception class for an upstream failure."""
    if isinstance(exc, UpstreamUnreachableError):
        return "Timeout" if exc.timed_out else "APIConnectionError"
    return _ERROR_CLASSES.get(exc.status, "APIError")


# LiteLLM's exception class per upstream status (its openai-compatible exception mapping).
_ERROR_CLASSES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    408: "Timeout",
    422: "UnprocessableEntityError",
    429: "RateLimitError",
    500: "InternalServerError",
    503: "ServiceUnavailableError",
}


def _model_of(raw: bytes) -> str:
    """The model a request asked for, best effort, for a request refused before parsing."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "None"
    model = body.get("model") if isinstance(body, dict) else None
    return model[:200] if isinstance(model, str) else "None"
