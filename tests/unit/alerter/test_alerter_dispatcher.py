"""Unit tests of delivery: anti-storm folding, claims, fan-out and retries (MockTransport)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import httpx

from tollgate_alerter.delivery import Destinations, Dispatcher, PagerDuty, RetryPolicy
from tollgate_alerter.policy import policy_from_settings
from tollgate_alerter.rules import Alert
from tollgate_shared.config import parse_config
from tollgate_shared.events import AlertSent


class Claims:
    def __init__(self) -> None:
        self.taken: set[str] = set()

    async def claim(self, key: str, ttl_s: float) -> bool:
        if key in self.taken:
            return False
        self.taken.add(key)
        return True


def make(handler: Any, window_s: float = 0.2, **general: Any) -> tuple[Dispatcher, list[AlertSent]]:
    policy = policy_from_settings(
        parse_config({"general_settings": {"alerting": ["slack"], **general}}).general_settings
    )
    published: list[AlertSent] = []

    async def publish(event: AlertSent) -> None:
        published.append(event)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    dispatcher = Dispatcher(
        policy,
        Destinations(
            slack_default="https://hooks.slack.test/default",
            pagerduty=PagerDuty("rk", "https://pd.test/v2/enqueue"),
        ),
        client,
        Claims(),
        publish,
        window_s=window_s,
        retry=RetryPolicy(attempts=3, initial_s=0.01, max_s=0.02),
    )
    return dispatcher, published


def alert(subject: str = "dep-1", request_id: str = "r", **kw: Any) -> Alert:
    values: dict[str, Any] = {
        "alert_type": "llm_exceptions",
        "level": "High",
        "message": "LLM API call failed: `boom`",
        "subject": subject,
        "occurred_at": datetime.now(UTC),
        "request_id": request_id,
    }
    values.update(kw)
    return Alert(**values)


async def test_repeats_within_the_window_fold_into_one_message_with_a_count() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, text="ok")

    dispatcher, published = make(handler)
    for i in range(5):
        assert await dispatcher.submit(alert(request_id=f"r{i}"))
    await dispatcher.submit(alert(subject="dep-2", request_id="other"))
    await asyncio.sleep(0.4)
    await dispatcher.close()
    texts = sorted(s["text"] for s in seen)
    assert len(texts) == 2
    assert texts[0].startswith("Level: `High`")
    assert "[Num Alerts: 5]" in texts[1]
    assert "`r0, r1, r2, r3, r4`" in texts[1]
    assert sorted(p.count for p in published) == [1, 5]


async def test_a_claimed_dedup_key_is_sent_once() -> None:
    calls: list[str] = []
    dispatcher, _ = make(lambda r: calls.append(str(r.url)) or httpx.Response(200), window_s=0)
    first = alert(dedup_key="budget/team/t/95", dedup_ttl_s=60)
    assert await dispatcher.submit(first)
    assert not await dispatcher.submit(first)
    await dispatcher.close()
    assert calls == ["https://hooks.slack.test/default"]


async def test_disabled_types_are_dropped() -> None:
    calls: list[str] = []
    dispatcher, _ = make(
        lambda r: calls.append(str(r.url)) or httpx.Response(200),
        window_s=0,
        alert_types=["budget_alerts"],
    )
    assert not await dispatcher.submit(alert())
    await dispatcher.close()
    assert calls == []


async def test_retries_then_gives_up_without_blocking_other_destinations() -> None:
    attempts: dict[str, int] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        host = request.url.host
        attempts[host] = attempts.get(host, 0) + 1
        if host == "pd.test":
            return httpx.Response(503)
        return httpx.Response(200)

    dispatcher, published = make(handler, window_s=0, alerting=["slack", "pagerduty"])
    outcomes = await dispatcher.deliver(alert())
    await dispatcher.close()
    by_kind = {o.kind: o for o in outcomes}
    assert by_kind["slack"].ok
    assert not by_kind["pagerduty"].ok
    assert attempts == {"hooks.slack.test": 1, "pd.test": 3}
    assert published[0].destinations == ["slack:hooks.slack.test"]


async def test_client_errors_are_not_retried() -> None:
    attempts: list[int] = []
    dispatcher, published = make(lambda r: attempts.append(1) or httpx.Response(404), window_s=0)
    outcomes = await dispatcher.deliver(alert())
    await dispatcher.close()
    assert len(attempts) == 1
    assert not outcomes[0].ok
    assert published == []


async def test_pagerduty_payload_uses_a_stable_dedup_key() -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "pd.test":
            bodies.append(json.loads(request.content))
            return httpx.Response(202, json={"status": "success"})
        return httpx.Response(200)

    dispatcher, _ = make(handler, window_s=0, alerting=["pagerduty"])
    await dispatcher.deliver(alert(request_id="a", details={"Deployment": "dep-1"}))
    await dispatcher.deliver(alert(request_id="b", details={"Deployment": "dep-1"}))
    low = alert(level="Low", alert_type="llm_too_slow")
    await dispatcher.deliver(low)  # below the PagerDuty level: not paged
    await dispatcher.close()
    assert len(bodies) == 2
    assert bodies[0]["dedup_key"] == bodies[1]["dedup_key"] == "tollgate/llm_exceptions/dep-1"
    assert bodies[0]["payload"]["severity"] == "critical"
    assert bodies[0]["payload"]["component"] == "dep-1"
    assert bodies[0]["routing_key"] == "rk"
