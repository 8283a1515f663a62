"""Publishes the supervisor's crash-loop events to NATS from a thread of its own, with retries.

The supervisor ticks in plain threads; this module gives it one asyncio loop in a
daemon thread where `tollgate_shared.publishing` publishes each `ServiceCrashLoop`
(`Nats-Msg-Id` = event id, so a retried copy is dropped by JetStream). A publish
that fails (NATS restarting, itself crash-looping) is retried with backoff for up
to ten minutes (tenacity); announcing never blocks or fails the supervisor.

It connects as the `supervisor` NATS user (publish `ops.>` only) when the embedded
NATS has authorization, else as the environment says (`TOLLGATE_NATS_USER`, …).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS
from pydantic import SecretStr
from tenacity import AsyncRetrying, stop_after_delay, wait_exponential

from tollgate_shared.events import ServiceCrashLoop, new_event_id
from tollgate_shared.permissions import SUPERVISOR
from tollgate_shared.publishing import connect_nats, publish_event
from tollgate_shared.settings import NatsAuth
from tollgate_shared.vocabulary import ServiceCondition

log = logging.getLogger(__name__)

# How long one event is retried before the supervisor gives up on announcing it.
GIVE_UP_AFTER_S = 600.0
RETRY_MAX_WAIT_S = 30.0

Target = tuple[str, NatsAuth | None]


def nats_target(info: Mapping[str, Any]) -> Target | None:
    """Where the supervisor publishes, from its status info: the stack's NATS URL and, when
    the embedded NATS has authorization, the `supervisor` user's password from users.json."""
    servers = info.get("servers") or {}
    url = servers.get("TOLLGATE_NATS_URL") if isinstance(servers, Mapping) else None
    if not url:
        return None
    users_file = info.get("nats_users_file")
    if not users_file:
        return str(url), None  # a NATS given by URL: the environment's user, if any
    try:
        password = json.loads(Path(str(users_file)).read_text())[SUPERVISOR.name]
    except (OSError, ValueError, KeyError):
        return None
    return str(url), NatsAuth(user=SUPERVISOR.name, password=SecretStr(str(password)))


def crash_loop_event(
    condition: ServiceCondition,
    *,
    service: str,
    kind: str,
    loop_id: str,
    exits: int,
    window_s: float,
    restarts: int,
    last_exit_code: int | None,
    retry_in_s: float | None,
    log_file: Path | None,
) -> ServiceCrashLoop:
    return ServiceCrashLoop(
        producer="supervisor",
        condition=condition,
        service=service,
        kind="server" if kind == "server" else "service",
        loop_id=loop_id,
        host=socket.gethostname(),
        exits=exits,
        window_s=window_s,
        restarts=restarts,
        last_exit_code=last_exit_code,
        retry_in_s=retry_in_s,
        log_file=str(log_file) if log_file is not None else None,
    )


def new_loop_id() -> str:
    """One crash loop's id (time-ordered, like event ids)."""
    return new_event_id()


class Announcer:
    """Fire-and-forget publishing of the supervisor's events; one per supervisor."""

    def __init__(
        self,
        target: Callable[[], Target | None],
        say: Callable[[str], None],
        give_up_after_s: float = GIVE_UP_AFTER_S,
    ) -> None:
        self._target = target
        self._say = say
        self._give_up_after_s = give_up_after_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._nc: NATS | None = None
        self._pending: set[Future[None]] = set()
        self._lock = threading.Lock()

    def announce(self, event: ServiceCrashLoop) -> Future[None] | None:
        """Publish `event` in the background; None when there is no NATS to publish to."""
        target = self._target()
        if target is None:
            self._say(f"{event.service}: {event.condition} not announced (no NATS known yet)")
            return None
        loop = self._running_loop()
        future = asyncio.run_coroutine_threadsafe(self._publish(target, event), loop)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)
        return future

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=loop.run_forever, name="supervisor-announce", daemon=True
                )
                self._thread.start()
                self._loop = loop
            return self._loop

    async def _connection(self, target: Target) -> NATS:
        if self._nc is None or self._nc.is_closed:
            url, auth = target
            self._nc = await connect_nats(url, "tollgate-supervisor", auth=auth)
        return self._nc

    async def _publish(self, target: Target, event: ServiceCrashLoop) -> None:
        try:
            async for attempt in AsyncRetrying(
                wait=wait_exponential(multiplier=0.5, max=RETRY_MAX_WAIT_S),
                stop=stop_after_delay(self._give_up_after_s),
                reraise=True,
            ):
                with attempt:
                    nc = await self._connection(target)
                    await publish_event(nc.jetstream(), event)
        except Exception as exc:
            self._say(
                f"could not announce {event.condition} of {event.service} to NATS "
                f"within {self._give_up_after_s:.0f} s: {type(exc).__name__}: {exc}"
            )
            return
        log.info("announced %s of %s (%s)", event.condition, event.service, event.event_id)

    def close(self, timeout: float = 2.0) -> None:
        """Give events in flight up to `timeout` seconds, then close the connection and stop
        the thread."""
        with self._lock:
            loop, pending = self._loop, list(self._pending)
        if loop is None:
            return
        deadline = time.monotonic() + timeout
        for future in pending:
            with contextlib.suppress(Exception):
                future.result(max(0.0, deadline - time.monotonic()))
        stopping = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        with contextlib.suppress(Exception):
            stopping.result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout)
        if not loop.is_running():
            loop.close()
        with self._lock:
            self._loop = None
            self._thread = None
            self._nc = None

    async def _shutdown(self) -> None:
        """Close the connection and end every task still on the loop (retries included)."""
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
