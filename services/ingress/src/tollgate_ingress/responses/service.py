"""The Responses API use cases: create (bridged over chat completions, or passed through to a
native upstream), retrieve, delete and list input items, with `previous_response_id` read
from the shared response state. Each call goes through the Gateway's call record, events,
metrics, budgets and rate limits like any chat call."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson

from tollgate_ingress.auth import AuthError, Identity
from tollgate_ingress.parsing import (
    BadRequestError,
    ChatRequest,
    NotFoundError,
    parse_chat_request,
)
from tollgate_ingress.records import Call
from tollgate_ingress.responses import bridge
from tollgate_ingress.responses.store import ResponseStore, StoredResponse
from tollgate_ingress.routing import Deployment
from tollgate_ingress.service import (
    Answer,
    Failure,
    Gateway,
    StreamAnswer,
    StreamShape,
    canned_of,
)
from tollgate_ingress.upstream import Stream, adapter_of, mock
from tollgate_ingress.upstream import openai as upstream
from tollgate_ingress.upstream.openai import UpstreamError, UpstreamUnreachableError
from tollgate_ingress.usage import (
    StreamAccumulator,
    Usage,
    estimate_text_tokens,
    usage_from,
)
from tollgate_shared.errors import error_json
from tollgate_shared.events import LlmRequestFinished

log = logging.getLogger(__name__)

PATHS = ("/v1/responses", "/responses")


@dataclass(frozen=True)
class Turn:
    """One Responses request, resolved against the conversation it continues."""

    resp_id: str
    created_at: int
    body: dict[str, Any]
    items: list[dict[str, Any]]
    history: list[dict[str, Any]]
    previous: StoredResponse | None
    # The chat request that answers it on a bridged deployment (None: only a native one can).
    chat: dict[str, Any] | None
    bridge_error: BadRequestError | None

    def native_body(self) -> dict[str, Any]:
        body = bridge.native_body(self.body)
        if self.previous is not None and not self.previous.native:
            # A native upstream has never seen a bridged response: send the history instead.
            body.pop("previous_response_id", None)
            body["input"] = [
                {k: v for k, v in item.items() if k not in ("id", "status")}
                for item in [*self.history, *self.items]
            ]
        return body


class Responses:
    def __init__(self, gateway: Gateway, store: ResponseStore) -> None:
        self.gw = gateway
        self.store = store

    # -- reads ------------------------------------------------------------------------------
    async def _visible(self, identity: Identity, response_id: str, param: str) -> StoredResponse:
        record = await self.store.get(response_id)
        if record is None or not record.visible_to(
            identity.api_key_hash, identity.team_id, identity.is_master
        ):
            # Another key's response is as unknown as a missing one: no existence leak.
            raise NotFoundError(f"Response with id '{response_id}' not found.", param)
        return record

    async def read(
        self, headers: Mapping[str, str], response_id: str, action: str, query: Mapping[str, str]
    ) -> tuple[int, bytes]:
        """GET / DELETE a stored response, or list its input items."""
        try:
            identity = self.gw.identify(headers)
            record = await self._visible(identity, response_id, "response_id")
        except AuthError as exc:
            return exc.status, exc.body()
        except NotFoundError as exc:
            return 404, exc.body()
        if action == "delete":
            await self.store.delete(response_id)
            return 200, orjson.dumps(
                {"id": response_id, "object": "response.deleted", "deleted": True}
            )
        if action == "input_items":
            return _input_items(record.input_items, query)
        return 200, orjson.dumps(record.response)

    # -- create -----------------------------------------------------------------------------
    async def _turn(self, raw: bytes, identity: Identity, ids: str) -> Turn:
        body = bridge.load_body(raw)
        group = self.gw.router.group(body["model"])
        native_possible = body.get("mock_response") is None and any(
            bridge.is_native(d.params) for d in group
        )
        items = bridge.normalise_input(body["input"], ids, strict=not native_possible)
        previous: StoredResponse | None = None
        prev_id = body.get("previous_response_id")
        if prev_id is not None:
            try:
                previous = await self._visible(identity, prev_id, "previous_response_id")
            except NotFoundError as exc:
                if not native_possible:
                    exc.message = f"Previous response with id '{prev_id}' not found."
                    exc.code = "previous_response_not_found"
                    raise
                if await self.store.get(prev_id) is not None:
                    raise  # another key's: never passed on
                # Unknown here: the native upstream may know it (created there directly).
        history = previous.conversation if previous is not None else []
        chat: dict[str, Any] | None = None
        error: BadRequestError | None = None
        try:
            bridge.check_tool_outputs(history, items)
            chat = bridge.chat_body(
                body, bridge.to_messages([*history, *items], body.get("instructions"))
            )
        except BadRequestError as exc:
            if not native_possible:
                raise
            error = exc
        return Turn(f"resp_{ids}", int(time.time()), body, items, history, previous, chat, error)

    def _chat_request(self, turn: Turn, headers: Mapping[str, str]) -> ChatRequest:
        """The call as the gateway records it: the chat request it amounts to."""
        body = turn.chat
        if body is None:
            body = {
                "model": turn.body["model"],
                "messages": bridge.to_messages(
                    [*turn.history, *turn.items], turn.body.get("instructions")
                )
                or [{"role": "user", "content": ""}],
                "stream": bool(turn.body.get("stream")),
                **{k: turn.body[k] for k in bridge.GATEWAY_FIELDS if k in turn.body},
            }
        req = parse_chat_request(orjson.dumps(body), headers)
        # A chain is one session unless the client names its own.
        session = req.session_id or (turn.previous.session_id if turn.previous else turn.resp_id)
        return replace(req, call_type="aresponses", session_id=session)

    async def create(
        self,
        path: str,
        raw: bytes,
        headers: Mapping[str, str],
        client_host: str | None,
        t_start: float,
    ) -> Answer | StreamAnswer:
        turn: Turn | None = None

        async def prepare(identity: Identity, request_id: str) -> ChatRequest:
            nonlocal turn
            turn = await self._turn(raw, identity, request_id.replace("-", ""))
            return self._chat_request(turn, headers)

        opened = await self.gw.open_call(path, raw, headers, client_host, t_start, prepare)
        if isinstance(opened, Answer):
            return opened
        assert turn is not None
        go = self._stream if opened.request.stream else self._complete
        return await self.gw.run(opened, go(opened, turn, t_start))

    async def _keep(self, call: Call, turn: Turn, response: dict[str, Any], native: bool) -> None:
        """Store the response before its answer leaves, so the next call can continue it."""
        if turn.body.get("store") is False:
            return
        identity = call.identity
        output = response.get("output")
        record = StoredResponse(
            id=str(response.get("id") or turn.resp_id),
            api_key_hash=identity.api_key_hash,
            team_id=identity.team_id,
            session_id=call.request.session_id,
            native=native,
            model_id=call.deployment.model_id if call.deployment else None,
            input_items=turn.items,
            conversation=[
                *turn.history,
                *turn.items,
                *bridge.history_of(output if isinstance(output, list) else []),
            ],
            response=response,
        )
        try:
            await self.store.save(record)
        except Exception as exc:  # the answer exists: give it, say the chain cannot continue
            log.warning("response %s not stored (%r): it cannot be continued", record.id, exc)

    def _bridge_refused(self, turn: Turn) -> UpstreamError:
        err = turn.bridge_error
        assert err is not None
        return UpstreamError(400, err.message, code=err.param)

    # -- non-streamed ---------------------------------------------------------------------
    async def _complete(self, call: Call, turn: Turn, t_start: float) -> Answer:
        gw = self.gw
        req = call.request

        async def one(dep: Deployment) -> tuple[bool, dict[str, Any]]:
            canned = canned_of(req, dep)
            if canned is not None:
                chat = mock.mock_completion(
                    req.model, str(canned), req.messages, turn.resp_id, turn.created_at
                )
                return False, chat
            timeout = gw._timeout(dep, False)
            if bridge.is_native(dep.params):
                data = await upstream.chat(
                    gw.client, dep, turn.native_body(), timeout, call.traceparent, "/responses"
                )
                return True, data
            if turn.chat is None:
                raise self._bridge_refused(turn)
            return False, await adapter_of(dep).chat(
                gw.client, dep, req.upstream_body, timeout, call.traceparent
            )

        opened = await gw.attempt(call, t_start, one)
        if isinstance(opened, Answer):
            return opened
        _dep, (native, data), t_up = opened
        upstream_s = time.perf_counter() - t_up
        if native:
            usage = bridge.usage_from_response(data.get("usage"))
            response = data
        else:
            usage = usage_from(data.get("usage"))
            response = bridge.response_from_chat(
                data, turn.resp_id, turn.created_at, turn.body, usage
            )
        await self._keep(call, turn, response, native)
        return gw.answered(call, t_start, upstream_s, usage, response)

    # -- streamed -------------------------------------------------------------------------
    async def _stream(self, call: Call, turn: Turn, t_start: float) -> Answer | StreamAnswer:
        gw = self.gw
        req = call.request

        async def one(dep: Deployment) -> tuple[bool, Stream | mock.MockStream]:
            canned = canned_of(req, dep)
            if canned is not None:
                chat = mock.mock_completion(
                    req.model, str(canned), req.messages, turn.resp_id, turn.created_at
                )
                return False, mock.MockStream(mock.mock_chunks(chat))
            timeout = gw._timeout(dep, True)
            native = bridge.is_native(dep.params)
            if not native and turn.chat is None:
                raise self._bridge_refused(turn)
            s: Stream = (
                upstream.ChatStream(
                    gw.client, dep, turn.native_body(), timeout, call.traceparent, "/responses"
                )
                if native
                else adapter_of(dep).stream(
                    gw.client, dep, req.upstream_body, timeout, call.traceparent
                )
            )
            await s.open()
            return native, s

        opened = await gw.attempt(call, t_start, one)
        if isinstance(opened, Answer):
            return opened
        _dep, (native, source), t_up = opened
        if native:
            body = self._relay_native(call, turn, source, t_start, t_up)
        else:
            body = gw.relay(call, source, t_start, t_up, _ResponsesShape(self, call, turn))
        return StreamAnswer(gw._headers(call, None), body)

    async def _relay_native(
        self,
        call: Call,
        turn: Turn,
        source: Stream | mock.MockStream,
        t_start: float,
        t_up: float,
    ) -> AsyncIterator[bytes]:
        """A native upstream's event stream, relayed as it comes; its final response is
        stored before the completed event goes out."""
        gw = self.gw
        text: list[str] = []
        first: float | None = None
        event: LlmRequestFinished | None = None
        seq = 0
        try:
            response: dict[str, Any] | None = None
            async for ev in source.chunks():
                if ev is None:
                    break
                kind = str(ev.get("type", "message"))
                seq = int(ev.get("sequence_number") or seq) + 1
                if first is None and kind.endswith(".delta"):
                    first = time.perf_counter()
                if kind == "response.output_text.delta":
                    text.append(str(ev.get("delta", "")))
                if kind == "error":
                    raise UpstreamError(502, str(ev.get("message") or ev), code=ev.get("code"))
                if kind in ("response.completed", "response.incomplete", "response.failed"):
                    final = ev.get("response")
                    response = final if isinstance(final, dict) else {}
                    usage = bridge.usage_from_response(response.get("usage"))
                    await self._keep(call, turn, response, native=True)
                    event = gw.stream_completed(call, t_start, t_up, first, usage, response)
                yield bridge.sse(kind, ev)
            if response is None:
                raise UpstreamUnreachableError(
                    "the upstream closed the stream before it ended", timed_out=False
                )
        except (UpstreamError, UpstreamUnreachableError) as exc:
            tokens = estimate_text_tokens("".join(text))
            event = gw.stream_cut(call, exc, t_start, t_up, tokens, None)
            yield bridge.error_event(exc.message, getattr(exc, "code", None), seq, exc.status)
        finally:
            await source.close()
            if event is None:
                tokens = estimate_text_tokens("".join(text))
                event = gw.stream_abandoned(call, t_start, t_up, tokens, None, None)
            gw._finish(event, call)


class _ResponsesShape(StreamShape):
    """A bridged chat stream written as the Responses event stream; the response is stored
    before `response.completed` goes out."""

    must_end = True

    def __init__(self, responses: Responses, call: Call, turn: Turn) -> None:
        super().__init__()
        self.responses, self.call, self.turn = responses, call, turn
        self.out = bridge.StreamTranslator(turn.resp_id, turn.created_at, turn.body)

    def start(self) -> list[bytes]:
        return list(self.out.start())

    def feed(self, chunk: dict[str, Any]) -> list[bytes]:
        return list(self.out.feed(chunk))

    def finish(self) -> list[bytes]:
        return list(self.out.finish())

    def response(self, acc: StreamAccumulator, usage: Usage) -> Any:
        return self.out.snapshot("completed", usage)

    async def keep(self, response: Any) -> None:
        await self.responses._keep(self.call, self.turn, response, native=False)

    def completed(self, response: Any) -> list[bytes]:
        return [self.out.completed(response)]

    def error(self, acc: StreamAccumulator, exc: Failure) -> tuple[Any, bytes]:
        return self.out.snapshot("failed"), self.out.error(
            exc.message, getattr(exc, "code", None), exc.status
        )

    def partial(self, acc: StreamAccumulator) -> Any:
        return self.out.snapshot("incomplete")


def _input_items(items: list[dict[str, Any]], query: Mapping[str, str]) -> tuple[int, bytes]:
    """OpenAI's input item list: newest first unless `order=asc`, `limit` (1-100), `after`."""
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        return 400, error_json("order must be 'asc' or 'desc'", 400, param="order")
    raw_limit = query.get("limit", "20")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 100:
        return 400, error_json("limit must be between 1 and 100", 400, param="limit")
    ordered = list(reversed(items)) if order == "desc" else list(items)
    after = query.get("after")
    if after:
        at = next((i for i, item in enumerate(ordered) if item.get("id") == after), None)
        if at is None:
            return 400, error_json(f"No input item with id '{after}'", 400, param="after")
        ordered = ordered[at + 1 :]
    page = ordered[: int(raw_limit)]
    return 200, orjson.dumps(
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(ordered) > len(page),
        }
    )
