"""Helpers for ledger tests: run a consumer until idle, build and publish events."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from nats.js import JetStreamContext

from tollgate_shared import consuming, names
from tollgate_shared.events import LlmRequestCompleted, LlmRequestFailed


async def run_until_idle(
    js: JetStreamContext,
    spec: names.ConsumerSpec,
    handle: Callable[[list[Any]], Awaitable[None]],
    *,
    timeout: float = 30.0,
    batch_size: int = 500,
) -> None:
    """Run the consumer until it has nothing pending or unacknowledged, then stop it."""
    task = asyncio.create_task(
        consuming.run_consumer(js, spec, handle, batch_size=batch_size, fetch_timeout=0.2)
    )
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        idle_checks = 0
        while True:
            await asyncio.sleep(0.1)
            if task.done():
                task.result()
            info = await js.consumer_info(spec.stream, spec.name)
            idle_checks = (
                idle_checks + 1 if not info.num_pending and not info.num_ack_pending else 0
            )
            if idle_checks >= 3:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"consumer not idle: {info}")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # The cancelled fetch's pull request lives on for its expiry: let it lapse, or the
        # server hands the next message to a subscriber that is gone.
        await asyncio.sleep(0.3)


T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


def make_completed(team: str, n: int, **kw: Any) -> LlmRequestCompleted:
    base: dict[str, Any] = {
        "producer": "test",
        "request_id": f"{team}-req-{n}",
        "call_type": "acompletion",
        "api_key_hash": f"{team}-key-{n % 2}",
        "key_alias": f"alias-{n % 2}",
        "team_id": team,
        "team_alias": f"{team}-alias",
        "user_id": f"{team}-user",
        "requested_model": "gpt-4o",
        "model_group": "gpt-4o",
        "model": "gpt-4o",
        "start_time": T0 + timedelta(seconds=n),
        "end_time": T0 + timedelta(seconds=n, milliseconds=500),
        "total_latency_ms": 500.0,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "spend": Decimal("0.001") * (n + 1),
        "session_id": f"{team}-sess",
        "tags": ["tag-a"],
        "messages": [{"role": "user", "content": f"hello {n}"}],
        "response": {"choices": [{"message": {"content": "hi"}}]},
        "proxy_server_request": {"body": {"model": "gpt-4o"}},
    }
    base.update(kw)
    return LlmRequestCompleted.model_validate(base)


def make_failed(team: str, n: int, **kw: Any) -> LlmRequestFailed:
    data = make_completed(team, n).model_dump()
    data.pop("status")
    data.update(
        {
            "spend": Decimal(0),
            "error_class": "APIError",
            "error_message": "upstream 500",
            "status_code": 500,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "total_tokens": 0,
        }
    )
    data.update(kw)
    return LlmRequestFailed.model_validate(data)


async def publish_raw(js: JetStreamContext, subject: str, payload: bytes) -> None:
    await js.publish(subject, payload, headers={"Nats-Msg-Id": uuid.uuid4().hex})
