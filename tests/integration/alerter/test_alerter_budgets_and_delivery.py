"""Budget alerts across two replicas, destinations (routes, Discord, PagerDuty, webhook, e-mail)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from nats.js import JetStreamContext

from support import builders
from support.alert_receivers import AlertReceiver, SmtpReceiver
from tollgate_shared.events import AdminChanged, LedgerSpendUpdated
from tollgate_shared.names import AdminSubject
from tollgate_shared.publishing import publish_event
from tollgate_shared.redaction import mask_value

SLACK = "/slack/T000/B000/default"
MASTER_KEY = "sk-alerter-test-master-key-0123"


def spend(team: str, amount: str, keys: tuple[str, ...] = ()) -> LedgerSpendUpdated:
    team_total = builders.spend_total(
        entity="team", entity_id=team, spend=Decimal(amount), max_budget=Decimal(100)
    )
    # Keys of the team carry no budget of their own: they must not alert for the team's.
    key_totals = [
        builders.spend_total(entity="key", entity_id=k, spend=Decimal(amount)) for k in keys
    ]
    return builders.spend_updated(team_total, *key_totals)


async def test_budget_crossings_alert_once_per_level_with_two_replicas(
    js: JetStreamContext, run_alerter, receiver: AlertReceiver, uid: str, settle
) -> None:
    team = f"team-{uid}"
    keys = (f"{uid}aaaa" * 4, f"{uid}bbbb" * 4)
    general = {"alerting": ["slack"], "alert_types": ["budget_alerts"]}
    url = receiver.url(SLACK)
    async with (
        run_alerter(general, slack_webhook_url=url) as (app_a, _),
        run_alerter(general, slack_webhook_url=url) as (app_b, _),
    ):
        # Through JetStream: each update goes to one replica or the other.
        for amount in ("50", "86", "87", "90", "96", "97", "101", "120", "130"):
            for _ in range(2):
                await publish_event(js, spend(team, amount, keys))
        # The same event handed to both replicas at once (as after a redelivery).
        same = spend(team, "140", keys)
        await asyncio.gather(app_a.state.alerter.handle(same), app_b.state.alerter.handle(same))
        await receiver.wait_for(SLACK, lambda r: team in r.text, count=3, timeout=10)
        await settle(spend(f"marker-{uid}", "0"))
    mine = receiver.texts(SLACK, team)
    assert len(mine) == 3, mine
    assert sum("85% of budget used" in t for t in mine) == 1
    assert sum("95% of budget used" in t for t in mine) == 1
    assert sum("Team Budget: Budget Crossed" in t for t in mine) == 1
    assert all("Level: `High`" in t for t in mine)


async def test_alert_to_webhook_url_list_reaches_every_url_and_discord_gets_slack_payload(
    js: JetStreamContext, run_alerter, receiver: AlertReceiver, events, settle, monkeypatch
) -> None:
    discord = "/api/webhooks/1240030362193760286/tokenTOKEN/slack"
    teams = "/webhookb2/abc/IncomingWebhook/def/ghi"
    monkeypatch.setenv("ALERTER_TEST_SECOND_URL", receiver.url("/slack/second"))
    general = {
        "alerting": ["slack"],
        "alert_to_webhook_url": {
            "llm_exceptions": [
                receiver.url("/slack/first"),
                "os.environ/ALERTER_TEST_SECOND_URL",
                receiver.url(discord),
                receiver.url(teams),
            ],
            "llm_too_slow": receiver.url("/slack/slow-only"),
        },
    }
    failed = events.failed(status=502)
    async with run_alerter(general, slack_webhook_url=receiver.url(SLACK)):
        await publish_event(js, failed)
        paths = ("/slack/first", "/slack/second", discord, teams)
        got = [await receiver.wait_for(p, lambda r: failed.request_id in r.text) for p in paths]
        await settle(events.completed())
    bodies = [g[0].body for g in got]
    assert all(len(g) == 1 for g in got)
    assert all(b == bodies[0] for b in bodies)  # the same Slack payload everywhere
    assert set(bodies[0]) == {"text"}
    # A routed type does not also go to the default URL or to other types' URLs.
    assert receiver.texts(SLACK, failed.request_id) == []
    assert receiver.texts("/slack/slow-only", failed.request_id) == []


async def test_pagerduty_webhook_and_email_receive_a_budget_alert(
    js: JetStreamContext, run_alerter, receiver: AlertReceiver, smtp: SmtpReceiver, uid: str
) -> None:
    general = {
        "alerting": ["slack", "pagerduty", "webhook", "email"],
        "alert_types": ["budget_alerts"],
    }
    team = f"team-{uid}"
    async with run_alerter(
        general,
        slack_webhook_url=receiver.url(SLACK),
        pagerduty_api_key="pd-routing-key",
        pagerduty_events_url=receiver.url("/v2/enqueue"),
        webhook_url=receiver.url("/hooks/budget"),
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_sender_email="alerts@tollgate.test",
        alert_email_to="oncall@example.com, finance@example.com",
    ):
        await publish_event(js, spend(team, "101"))
        pd = await receiver.wait_for("/v2/enqueue", lambda r: team in str(r.body))
        hook = await receiver.wait_for("/hooks/budget", lambda r: r.body.get("team_id") == team)
        mails = await smtp.wait_for(lambda m: team in m.body)
        slack = await receiver.wait_for(SLACK, lambda r: team in r.text)
    assert len(slack) == 1
    event = pd[0].body
    assert event["routing_key"] == "pd-routing-key"
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == f"tollgate/budget_alerts/team/{team}"
    assert event["payload"]["severity"] == "critical"
    assert event["payload"]["source"] == "tollgate-alerter"
    assert "Budget Crossed" in event["payload"]["summary"]
    body = hook[0].body
    assert body["event"] == "budget_crossed"
    assert body["event_group"] == "team"
    assert body["spend"] == 101.0
    assert body["max_budget"] == 100.0
    assert body["event_message"].startswith("Team Budget: Budget Crossed")
    assert {"token", "user_id", "key_alias", "user_email", "projected_spend"} <= set(body)
    assert mails[0].mail_from == "alerts@tollgate.test"
    assert sorted(mails[0].rcpt_tos) == ["finance@example.com", "oncall@example.com"]
    assert "budget_alerts" in mails[0].subject


async def test_retries_on_5xx_and_a_dead_destination_does_not_delay_the_others(
    js: JetStreamContext, run_alerter, receiver: AlertReceiver, events, settle
) -> None:
    receiver.fail_with["/slack/flaky"] = [503, 429]
    receiver.fail_with["/slack/dead"] = [500] * 20
    general = {
        "alerting": ["slack"],
        "alert_types": ["llm_exceptions"],
        "alert_to_webhook_url": {
            "llm_exceptions": [
                receiver.url("/slack/dead"),
                receiver.url("/slack/flaky"),
                receiver.url("/slack/healthy"),
            ]
        },
    }
    failed = events.failed(status=500)
    async with run_alerter(
        general, delivery_attempts=4, delivery_backoff_s=0.3, delivery_backoff_max_s=1.0
    ):
        await publish_event(js, failed)
        healthy = await receiver.wait_for("/slack/healthy", lambda r: failed.request_id in r.text)
        flaky = await receiver.wait_for("/slack/flaky", lambda r: failed.request_id in r.text)
        # Leaving the block waits for deliveries in flight: the dead URL's last retry included.
        await settle(events.completed())
    assert len(healthy) == 1
    assert len(flaky) == 1
    assert receiver.attempts["/slack/flaky"] == 3
    assert receiver.attempts["/slack/dead"] == 4  # gave up after the configured attempts
    # The healthy URL did not wait for the flaky one's backoff.
    assert healthy[0].at < flaky[0].at


async def test_management_alerts_are_off_unless_listed_and_redact_secrets(
    js: JetStreamContext, run_alerter, receiver: AlertReceiver, uid: str, settle
) -> None:
    def key_created(alias: str) -> AdminChanged:
        return builders.admin_change(
            AdminSubject.KEY_CREATED,
            object_id=f"{uid}" + "0" * 54,
            changed_by="admin-user",
            updated_values={"key_alias": alias, "key": "sk-plaintext-secret", "max_budget": 5},
        )

    model_added = builders.admin_change(
        AdminSubject.MODEL_CREATED,
        object_id=f"model-{uid}",
        changed_by=None,
        updated_values={"model_name": f"gpt-{uid}", "litellm_params": {"model": "openai/gpt-4o"}},
    )
    url = receiver.url(SLACK)
    async with run_alerter({"alerting": ["slack"]}, slack_webhook_url=url):
        await publish_event(js, key_created(f"default-{uid}"))
        await publish_event(js, model_added)
        added = await receiver.wait_for(SLACK, lambda r: f"gpt-{uid}" in r.text)
        # team_updated is a management type too (off): a marker that alerts nowhere.
        await settle(builders.admin_change(AdminSubject.TEAM_UPDATED, object_id=f"team-{uid}"))
    assert "New Model Added" in added[0].text
    assert receiver.texts(SLACK, f"default-{uid}") == []  # management types are opt-in
    general = {"alerting": ["slack"], "alert_types": ["new_virtual_key_created"]}
    async with run_alerter(general, slack_webhook_url=url):
        await publish_event(js, key_created(f"listed-{uid}"))
        got = await receiver.wait_for(SLACK, lambda r: f"listed-{uid}" in r.text)
    assert len(got) == 1
    assert "Virtual Key Created" in got[0].text
    assert "admin-user" in got[0].text
    assert "sk-plaintext-secret" not in got[0].text
    assert f"key: `{mask_value('sk-plaintext-secret')}`" in got[0].text  # the shared format


async def test_health_services_slack_sends_a_test_message_and_422_without_slack(
    run_alerter, receiver: AlertReceiver
) -> None:
    auth = {"Authorization": f"Bearer {MASTER_KEY}"}
    general = {
        "alerting": ["slack"],
        "alert_to_webhook_url": {"llm_exceptions": receiver.url("/slack/exceptions")},
    }
    async with run_alerter(general, slack_webhook_url=receiver.url(SLACK)) as (_, client):
        unauthorized = await client.get("/health/services", params={"service": "slack"})
        missing = await client.get("/health/services", headers=auth)
        resp = await client.get("/health/services", params={"service": "slack"}, headers=auth)
    assert unauthorized.status_code == 401
    assert missing.status_code == 400
    assert missing.json()["error"]["param"] == "service"
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "success"
    assert body["message"] == "Mock Slack Alert sent, verify Slack Alert Received on your channel"
    assert "llm_exceptions" in body["alert_types"]
    assert "new_virtual_key_created" not in body["alert_types"]
    assert len(body["destinations"]) == 2
    assert receiver.texts(SLACK, "This is a test slack alert message") != []
    assert receiver.texts("/slack/exceptions", "LLM Exception test alert") != []

    async with run_alerter({"alerting": ["webhook"]}, webhook_url=receiver.url("/hooks/x")) as (
        _,
        client,
    ):
        refused = await client.get("/health/services", params={"service": "slack"}, headers=auth)
        hook = await client.get("/health/services", params={"service": "webhook"}, headers=auth)
    assert refused.status_code == 422
    assert '"slack" not in proxy config' in refused.json()["error"]["message"]
    assert hook.status_code == 200, hook.text
    assert receiver.at("/hooks/x")[0].body["event"] == "budget_crossed"


async def test_health_services_reports_a_failing_destination(
    run_alerter, receiver: AlertReceiver
) -> None:
    receiver.fail_with["/slack/broken"] = [404]
    auth = {"Authorization": f"Bearer {MASTER_KEY}"}
    async with run_alerter(
        {"alerting": ["slack"]}, slack_webhook_url=receiver.url("/slack/broken")
    ) as (_, client):
        resp = await client.get("/health/services", params={"service": "slack"}, headers=auth)
    assert resp.status_code == 502
    assert resp.json()["destinations"][0]["status"] == "failed"
    assert receiver.attempts["/slack/broken"] == 1  # a 404 is not retried
