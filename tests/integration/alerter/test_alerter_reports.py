"""Scheduled reports (spend, daily, fallbacks): built from consumed events, sent by one replica."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from nats.js import JetStreamContext

from support import builders
from support.alert_receivers import AlertReceiver
from tollgate_shared.publishing import publish_event

SLACK = "/slack/T000/B000/reports"


async def test_spend_daily_and_fallback_reports_are_sent_once_by_two_replicas(
    js: JetStreamContext, run_alerter, receiver: AlertReceiver, events, uid: str
) -> None:
    general = {
        "alerting": ["slack"],
        "alert_types": ["spend_reports", "daily_reports", "fallback_reports"],
        "spend_report_frequency": "3s",
        "alerting_args": {"daily_report_frequency": 3, "report_check_interval": 0.3},
    }
    overrides = {"slack_webhook_url": receiver.url(SLACK), "fallback_report_frequency": "3s"}
    fallback = builders.deployment_changed(
        state="fallback",
        model_group=f"group-{uid}",
        model_id="dep-b",
        fallback_model_group=f"backup-{uid}",
    )
    async with (
        run_alerter(general, **overrides),
        run_alerter(general, **overrides),
    ):
        await asyncio.sleep(0.8)  # both replicas have started the schedule's clock
        for i in range(3):
            await publish_event(
                js,
                events.completed(
                    seconds=1.0 + i,
                    spend=Decimal("0.25"),
                    tags=[f"tag-{uid}"],
                    key_alias=f"k-{uid}",
                ),
            )
        await publish_event(js, events.failed(status=500))
        await publish_event(js, fallback)
        spend_reports = await receiver.wait_for(SLACK, lambda r: f"tag-{uid}" in r.text, timeout=10)
        daily = await receiver.wait_for(
            SLACK, lambda r: "key metrics" in r.text and events.deployment in r.text, timeout=10
        )
        fallbacks = await receiver.wait_for(SLACK, lambda r: f"backup-{uid}" in r.text, timeout=10)
        await asyncio.sleep(3.5)  # a second period passes: nothing new to report
    assert len(spend_reports) == 1, receiver.texts(SLACK)
    report = spend_reports[0].text
    assert "Spend Report for" in report
    assert "Team: `Ops` | Spend: `$0.7500`" in report
    assert f"Key: `k-{uid}` | Spend: `$0.7500`" in report
    assert f"Tag: `tag-{uid}` | Spend: `$0.7500`" in report
    assert "Model: `fake` | Spend: `$0.7500`" in report
    assert len(daily) == 1
    assert "Top Deployments with Most Failed Requests" in daily[0].text
    assert "Failed Requests: `1`" in daily[0].text
    assert len(fallbacks) == 1
    assert f"group-{uid} -> backup-{uid}" in fallbacks[0].text
