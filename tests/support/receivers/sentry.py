"""Sentry's envelope endpoint (`/api/{project}/envelope/`), decoded with sentry-sdk's own
`Envelope` parser; `X-Sentry-Auth` must carry the project's public key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from litestar import Litestar, Request, Response, post
from litestar.params import FromPath
from sentry_sdk.envelope import Envelope

from support.receivers import _Receiver


@dataclass
class SentryReceiver(_Receiver):
    public_key: str = "abc123"
    project: str = "42"
    events: list[dict[str, Any]] = field(default_factory=list)
    envelope_headers: list[dict[str, Any]] = field(default_factory=list)

    def dsn(self) -> str:
        return f"http://{self.public_key}@127.0.0.1:{self.port}/{self.project}"

    def app(self) -> Litestar:
        rec = self

        @post("/api/{project:str}/envelope/", status_code=200)
        async def envelope(
            project: FromPath[str], request: Request[Any, Any, Any]
        ) -> Response[Any]:
            body, failure = await rec._gate(request)
            if failure is not None:
                return failure
            auth = request.headers.get("x-sentry-auth", "")
            if project != rec.project or f"sentry_key={rec.public_key}" not in auth:
                return Response({"detail": "invalid project or key"}, status_code=401)
            try:
                env = Envelope.deserialize(body)
            except Exception as exc:
                return Response({"detail": f"bad envelope: {exc}"}, status_code=400)
            events = [i.payload.json for i in env.items if i.type == "event"]
            if not events or any(not isinstance(e, dict) or "event_id" not in e for e in events):
                return Response({"detail": "no event"}, status_code=400)
            with rec._lock:
                rec.envelope_headers.append(dict(env.headers))
                rec.events.extend(events)
            return Response({"id": events[0]["event_id"]})

        return Litestar([envelope])
