"""LLM alerts end to end through JetStream: exceptions, outages, slow and hanging requests."""

from __future__ import annotations

import asyncio

from nats.js import JetStreamContext

from support import builders
from support.alert_receivers import AlertReceiver
from support.events import wait_for_events
from tollgate_shared import names
from tollgate_shared.publishing import publish_event

SLACK = "/slack/T000/B000/default"


def settings_for(receiver: AlertReceiver, **general: object) -> dict[str, object]:
    return {"alerting": ["slack"], "alerting_threshold": 1, **general}


async def test_failed_event_raises_llm_exception_alert_within_seconds(
    js: JetStreamContext, run_alerter, receiver: AlertReceiver, events
) -> None:
    failed = events.failed(status=500)
    async with run_alerter(settings_for(receiver), slack_webhook_url=receiver.url(SLACK)):
        await publish_event(js, failed)
        got = await receiver.wait_for(SLACK, lambda r: failed.request_id in r.text, timeout=10)
        sent = await wait_for_events(
            js,
            names.alert_sent_subject("llm_exceptions"),
            {
                "alert_type": "llm_exceptions",
                "dedup_key": f"event/{failed.event_id}/llm_exceptions",
            },
        )
    assert len(got) == 1
    text = got[0].text
    assert "Level: `High`" in text
    assert "LLM API call failed: `APIError: upstream said no`" in text
    for expected in (events.deployment, "fake-model", "ops-key", "Ops", "500"):
        assert expected in text
    # The API base is shown without its query string; content never appears.
    assert "http://upstream.test:9/v1" in text
    assert "hidden" not in text
    assert "TOP SECRET" not in text
    assert len(sent) == 1
    assert sent[0][1]["destinations"] == [f"slack:127.0.0.1:{receiver.port}"]


async def test_burst_of_503s_gives_one_exception_alert_and_one_outage_alert_per_level(
    js: JetStreamContext, run_alerter, receiver: AlertReceiver, events, settle
) -> None:
    burst = [events.failed(status=503) for _ in range(12)]
    async with run_alerter(
        settings_for(receiver), slack_webhook_url=receiver.url(SLACK), alert_window_s=2.0
    ):
        for event in burst:
            await publish_event(js, event)
        dep = events.deployment
        await receiver.wait_for(SLACK, lambda r: "Major Service Outage" in r.text and dep in r.text)
        exceptions = await receiver.wait_for(
            SLACK, lambda r: "LLM API call failed" in r.text and dep in r.text, timeout=8
        )
        # Every failure has been evaluated; leaving the block sends what is still folding.
        await settle(events.completed())
    mine = [t for t in receiver.texts(SLACK) if dep in t]
    minor = [t for t in mine if "Minor Service Outage" in t]
    major = [t for t in mine if "Major Service Outage" in t]
    exceptions = [t for t in mine if "LLM API call failed" in t]
    assert len(minor) == 1, mine
    assert len(major) == 1, mine
    assert "API Errors: 10" in major[0]
    assert "Level: `High`" in major[0]
    assert "Level: `Medium`" in minor[0]
    assert len(exceptions) == 1, exceptions
    assert exceptions[0].startswith("[Num Alerts: 12]")
    assert len(mine) == 3


async def test_client_errors_do_not_count_towards_an_outage(
    js: JetStreamContext, run_alerter, receiver: AlertReceiver, events, settle
) -> None:
    async with run_alerter(
        settings_for(receiver, alert_types=["outage_alerts"]),
        slack_webhook_url=receiver.url(SLACK),
    ):
        for _ in range(12):
            await publish_event(js, events.failed(status=429))
        # Once the 500 is acked, the 429s before it were evaluated: one error in the window,
        # below the minor threshold.
        await settle(events.failed(status=500))
    assert [t for t in receiver.texts(SLACK) if events.deployment in t] == []


async def test_slow_completion_raises_llm_too_slow_and_fast_one_does_not(
    js: JetStreamContext, run_alerter, receiver: AlertReceiver, events, settle
) -> None:
    slow = events.completed(seconds=2.5)
    fast = events.completed(seconds=0.2)
    async with run_alerter(settings_for(receiver), slack_webhook_url=receiver.url(SLACK)):
        await publish_event(js, fast)
        await publish_event(js, slow)
        got = await receiver.wait_for(SLACK, lambda r: slow.request_id in r.text)
        await settle(events.completed())
    assert len(got) == 1
    assert "Responses are slow - 2.5s response time > Alerting threshold: 1.0s" in got[0].text
    assert "Level: `Low`" in got[0].text
    assert "TOP SECRET" not in got[0].text
    assert receiver.texts(SLACK, fast.request_id) == []


async def test_started_without_finish_is_hanging_and_fast_failure_is_not(
    js: JetStreamContext, run_alerter, receiver: AlertReceiver, events
) -> None:
    hanging = events.started()
    finished_start = events.started()
    finished = events.failed(status=500, request_id=finished_start.request_id)
    async with run_alerter(
        settings_for(receiver, alert_types=["llm_requests_hanging"]),
        slack_webhook_url=receiver.url(SLACK),
    ):
        for event in (hanging, finished_start, finished):
            await publish_event(js, event)
        got = await receiver.wait_for(SLACK, lambda r: hanging.request_id in r.text, timeout=8)
        # About time, not processing: more hanging sweeps (every 0.2 s) past the 1 s threshold.
        await asyncio.sleep(1.5)
    assert len(got) == 1
    assert "Requests are hanging - 1.0s+ request time" in got[0].text
    assert "Level: `Medium`" in got[0].text
    assert events.deployment in got[0].text
    assert receiver.texts(SLACK, finished.request_id) == []


async def test_cooldown_and_db_and_tracking_alerts(
    js: JetStreamContext, run_alerter, receiver: AlertReceiver, uid: str
) -> None:
    cooldown = builders.deployment_changed(
        model_group="fake",
        model_id=f"dep-{uid}",
        api_base="http://upstream.test/v1",
        reason="3 failures in 60s",
        cooldown_s=5,
    )
    db = builders.db_error(error=f"connection refused {uid}", batch_size=42)
    tracking = builders.tracking_failed(request_id=f"req-{uid}")
    async with run_alerter(settings_for(receiver), slack_webhook_url=receiver.url(SLACK)):
        for event in (cooldown, db, tracking):
            await publish_event(js, event)
        got_cooldown = await receiver.wait_for(SLACK, lambda r: f"dep-{uid}" in r.text)
        got_db = await receiver.wait_for(SLACK, lambda r: f"connection refused {uid}" in r.text)
        got_tracking = await receiver.wait_for(SLACK, lambda r: f"req-{uid}" in r.text)
    assert "is in cooldown" in got_cooldown[0].text
    assert "3 failures in 60s" in got_cooldown[0].text
    assert "DB read/write call failed" in got_db[0].text
    assert "`42`" in got_db[0].text
    assert "Failed Tracking Cost" in got_tracking[0].text


async def test_poison_message_is_terminated_and_the_next_event_still_alerts(
    js: JetStreamContext, run_alerter, receiver: AlertReceiver, events
) -> None:
    good = events.failed(status=500)
    async with run_alerter(settings_for(receiver), slack_webhook_url=receiver.url(SLACK)):
        await js.publish(f"{names.LLM_REQUEST_FAILED}._", b"{not json")
        await publish_event(js, good)
        got = await receiver.wait_for(SLACK, lambda r: good.request_id in r.text)
    assert len(got) == 1
