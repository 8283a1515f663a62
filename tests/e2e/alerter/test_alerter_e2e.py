"""The alerter as a real process behind ingress: LLM failures, slowness and hangs become alerts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from support.alert_receivers import AlertReceiver, alert_receiver
from support.configs import MASTER_KEY
from support.fake_upstream import FakeUpstream, fake_upstream
from support.system import running_system
from tollgate_devstack.embedded import StackUrls

SLACK = "/slack/T0/B0/e2e"
DISCORD = "/api/webhooks/123/abc/slack"


def write_config(path: Path, up: FakeUpstream, receiver: AlertReceiver) -> Path:
    cfg = {
        "model_list": [
            {
                "model_name": "fake",
                "litellm_params": {
                    "model": "openai/fake-model",
                    "api_base": up.base_url,
                    "api_key": "sk-upstream",
                    # The hung call ends (upstream timeout) soon after the alert, not at shutdown.
                    "timeout": 2.5,
                },
                "model_info": {"id": "fake-e2e-1"},
            }
        ],
        "router_settings": {"allowed_fails": 1000},
        "general_settings": {
            "master_key": MASTER_KEY,
            "alerting": ["slack"],
            "alerting_threshold": 1,
            "alert_to_webhook_url": {
                "llm_requests_hanging": [receiver.url(SLACK), receiver.url(DISCORD)]
            },
        },
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def call(client: openai.OpenAI) -> str | None:
    """One chat call; the request id (x-litellm-call-id) whether it succeeded or not."""
    try:
        raw = client.chat.completions.with_raw_response.create(
            model="fake", messages=[{"role": "user", "content": "PRIVATE PROMPT"}]
        )
        return raw.headers.get("x-litellm-call-id")
    except openai.APIStatusError as exc:
        return exc.response.headers.get("x-litellm-call-id")
    except openai.APITimeoutError:
        return None


@pytest.mark.timeout(120)
async def test_failures_slowness_and_hangs_raise_alerts_through_the_running_system(
    provisioned: StackUrls, tmp_path: Path
) -> None:
    with alert_receiver() as receiver, fake_upstream() as up:
        config = write_config(tmp_path / "config.yaml", up, receiver)
        env = {
            "SLACK_WEBHOOK_URL": receiver.url(SLACK),
            "TOLLGATE_ALERT_WINDOW_S": "2",
            "TOLLGATE_HANGING_CHECK_INTERVAL_S": "0.3",
            "TOLLGATE_REDIS_PREFIX": f"e2e-alerter:{tmp_path.name}",
        }
        with running_system(provisioned, tmp_path, config, env, backends=("alerter",)) as system:
            base = system.ingress_url
            auth = {"Authorization": f"Bearer {MASTER_KEY}"}
            # /health/services on the public port delivers a test message.
            health = httpx.get(
                f"{base}/health/services", params={"service": "slack"}, headers=auth, timeout=30
            )
            assert health.status_code == 200, health.text
            assert health.json()["status"] == "success"
            assert receiver.texts(SLACK, "This is a test slack alert message")

            client = openai.OpenAI(
                base_url=f"{base}/v1", api_key=MASTER_KEY, max_retries=0, timeout=3
            )
            # A burst of upstream 503s: one exception alert, one outage alert per level.
            up.fail_status = 503
            for _ in range(12):
                await asyncio.to_thread(call, client)
            major = await receiver.wait_for(SLACK, lambda r: "Major Service Outage" in r.text)
            exceptions = await receiver.wait_for(
                SLACK, lambda r: "LLM API call failed" in r.text, timeout=10
            )
            assert len(major) == 1, system.logs()
            assert len(exceptions) == 1
            assert exceptions[0].text.startswith("[Num Alerts: 12]")
            assert len(receiver.texts(SLACK, "Minor Service Outage")) == 1
            assert "fake-e2e-1" in exceptions[0].text
            assert "PRIVATE PROMPT" not in exceptions[0].text
            # A fast failure is not hanging; a slow answer is too slow.
            fast_failure = await asyncio.to_thread(call, client)
            up.fail_status = None
            up.latency_s = 1.6
            slow = await asyncio.to_thread(call, client)
            assert fast_failure
            assert slow
            too_slow = await receiver.wait_for(SLACK, lambda r: slow in r.text and "slow" in r.text)
            assert "Responses are slow" in too_slow[0].text
            # An upstream that never answers: hanging, reported on both routed URLs.
            up.latency_s = 0
            up.hang = True
            hung = asyncio.create_task(asyncio.to_thread(call, client))
            hanging = await receiver.wait_for(
                DISCORD, lambda r: "Requests are hanging" in r.text, timeout=10
            )
            await hung
            up.hang = False
            assert hanging, system.logs()
            routed = receiver.at(SLACK)
            assert any(r.body == hanging[0].body for r in routed)
            assert not [
                r
                for r in receiver.at(DISCORD) + routed
                if "hanging" in r.text and fast_failure in r.text
            ]
