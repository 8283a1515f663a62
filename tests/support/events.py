"""Reads events back from JetStream in tests, by request id."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy


async def wait_for_events(
    js: JetStreamContext,
    subject: str,
    match: dict[str, Any],
    count: int = 1,
    timeout: float = 10.0,
) -> list[tuple[str, dict[str, Any]]]:
    """Events on `subject` (wildcards allowed) whose fields equal `match`; waits for `count`."""
    found: list[tuple[str, dict[str, Any]]] = []
    sub = await js.subscribe(
        subject, ordered_consumer=True, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while len(found) < count and loop.time() < deadline:
            try:
                msg = await sub.next_msg(timeout=max(0.05, deadline - loop.time()))
            except TimeoutError:
                break
            try:
                data = json.loads(msg.data)
            except ValueError:
                continue  # other tests publish poison messages into the shared stream
            if isinstance(data, dict) and all(data.get(k) == v for k, v in match.items()):
                found.append((msg.subject, data))
    finally:
        await sub.unsubscribe()
    return found
