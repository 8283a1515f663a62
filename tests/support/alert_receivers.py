"""Receivers that record what Slack, Discord, PagerDuty, a generic webhook and SMTP would get.

`alert_receiver()` is a real HTTP server (in a thread) accepting JSON POSTs on
any path: `/slack/...` and `/api/webhooks/.../slack` answer like Slack (`ok`),
`/v2/enqueue` like PagerDuty's Events API (202). `fail_with[path]` holds status
codes to answer before succeeding, to exercise retries. `smtp_receiver()` is an
aiosmtpd server recording each message.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Annotated, Any

from aiosmtpd.controller import Controller
from litestar import Litestar, Request, Response, post
from litestar.params import PathParameter

from support.fake_upstream import serve_in_thread
from tollgate_devstack.embedded import free_port


@dataclass(frozen=True)
class Received:
    path: str
    body: Any
    at: float

    @property
    def text(self) -> str:
        return str(self.body.get("text", "")) if isinstance(self.body, dict) else ""


@dataclass
class AlertReceiver:
    port: int = 0
    received: list[Received] = field(default_factory=list)
    fail_with: dict[str, list[int]] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def app(self) -> Litestar:
        receiver = self

        @post("/{path:path}", status_code=200)
        async def record(
            request: Request[Any, Any, Any], path: Annotated[str, PathParameter()]
        ) -> Response[Any]:
            full = "/" + path.lstrip("/")
            with receiver._lock:
                receiver.attempts[full] = receiver.attempts.get(full, 0) + 1
                queued = receiver.fail_with.get(full)
                status = queued.pop(0) if queued else None
            if status is not None:
                return Response({"error": "injected"}, status_code=status)
            body = await request.json()
            with receiver._lock:
                receiver.received.append(Received(full, body, time.monotonic()))
            if full.endswith("/enqueue"):
                dedup = body.get("dedup_key") if isinstance(body, dict) else None
                return Response(
                    {"status": "success", "message": "Event processed", "dedup_key": dedup},
                    status_code=202,
                )
            return Response("ok", media_type="text/plain")

        return Litestar([record], debug=False)

    def at(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    def texts(self, path: str, contains: str = "") -> list[str]:
        return [r.text for r in self.at(path) if contains in r.text]

    async def wait_for(
        self,
        path: str,
        match: Callable[[Received], bool] = lambda r: True,
        count: int = 1,
        timeout: float = 10.0,
    ) -> list[Received]:
        """The records at `path` that `match`, once there are `count` of them (or at timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.at(path) if match(r)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.05)


@contextmanager
def alert_receiver() -> Iterator[AlertReceiver]:
    receiver = AlertReceiver()
    with serve_in_thread(receiver.app()) as port:
        receiver.port = port
        yield receiver


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    message: Message

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        payload = self.message.get_payload(decode=True)
        return payload.decode() if isinstance(payload, bytes) else str(payload)


@dataclass
class SmtpReceiver:
    port: int = 0
    mails: list[Mail] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.mails.append(
            Mail(envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(envelope.content))
        )
        return "250 Message accepted for delivery"

    async def wait_for(
        self, match: Callable[[Mail], bool], count: int = 1, timeout: float = 10.0
    ) -> list[Mail]:
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in self.mails if match(m)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.05)


@contextmanager
def smtp_receiver() -> Iterator[SmtpReceiver]:
    handler = SmtpReceiver(port=free_port())
    controller = Controller(handler, hostname="127.0.0.1", port=handler.port)
    controller.start()
    try:
        yield handler
    finally:
        controller.stop()
