"""Where alerts go: Slack-compatible webhooks, PagerDuty Events API v2, a generic webhook, SMTP.

Each destination sends one payload and raises `DeliveryError` when it was not
accepted; `retryable` says whether trying again can help (429, 5xx, network).
`send_with_retry` retries those with exponential backoff (tenacity).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import aiosmtplib
import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
)

from tollgate_alerter.rules import Alert, Level
from tollgate_shared.retries import retry_after_s, wait_retry_after

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
_PD_SEVERITY: dict[Level, str] = {"High": "critical", "Medium": "error", "Low": "warning"}
_LEVEL_RANK: dict[str, int] = {"Low": 0, "Medium": 1, "High": 2}


class DeliveryError(Exception):
    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    initial_s: float = 0.5
    max_s: float = 8.0


async def send_with_retry(send: Callable[[], Awaitable[None]], policy: RetryPolicy) -> int:
    """Run `send` until it succeeds or fails for good; returns the number of attempts."""
    tries = 0
    async for attempt in AsyncRetrying(
        stop=stop_after_attempt(policy.attempts),
        # The destination's Retry-After (Slack sends one with 429) wins, up to max_s.
        wait=wait_retry_after(initial=policy.initial_s, maximum=policy.max_s, cap=policy.max_s),
        retry=retry_if_exception(lambda e: isinstance(e, DeliveryError) and e.retryable),
        reraise=True,
    ):
        with attempt:
            tries += 1
            await send()
    return tries


def url_label(kind: str, url: str) -> str:
    """A destination name safe to log and publish: scheme-less host and port, no path secrets."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{kind}:{host}:{parts.port}" if parts.port else f"{kind}:{host}"


async def post_json(client: httpx.AsyncClient, url: str, payload: Mapping[str, Any]) -> None:
    try:
        resp = await client.post(url, json=payload)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}", retryable=True) from exc
    if resp.status_code == 429 or resp.status_code >= 500:
        raise DeliveryError(
            f"HTTP {resp.status_code}",
            retryable=True,
            status=resp.status_code,
            retry_after=retry_after_s(resp.headers),
        )
    if resp.status_code >= 400:
        raise DeliveryError(
            f"HTTP {resp.status_code}: {resp.text[:200]}", retryable=False, status=resp.status_code
        )


@dataclass(frozen=True)
class SlackWebhook:
    """Slack incoming webhook; Discord `/slack` and Teams Slack-style URLs take the same body."""

    url: str
    kind = "slack"

    @property
    def label(self) -> str:
        return url_label("slack", self.url)

    async def send(self, client: httpx.AsyncClient, text: str) -> None:
        await post_json(client, self.url, {"text": text})


@dataclass(frozen=True)
class PagerDuty:
    """PagerDuty Events API v2: repeats of one alert subject share a dedup key (one incident)."""

    routing_key: str
    events_url: str = PAGERDUTY_EVENTS_URL
    min_level: str = "Medium"
    source: str = "tollgate-alerter"
    kind = "pagerduty"

    @property
    def label(self) -> str:
        return url_label("pagerduty", self.events_url)

    def wants(self, alert: Alert) -> bool:
        return _LEVEL_RANK[alert.level] >= _LEVEL_RANK.get(self.min_level, 1)

    def payload(self, alert: Alert, count: int, request_ids: Sequence[str]) -> dict[str, Any]:
        details: dict[str, Any] = dict(alert.details)
        details["alert_type"] = alert.alert_type
        details["count"] = count
        if request_ids:
            details["request_ids"] = list(request_ids[:20])
        component = alert.details.get("Deployment") or alert.details.get("Model")
        body: dict[str, Any] = {
            "summary": f"[{alert.alert_type}] {alert.headline}"[:1024],
            "source": self.source,
            "severity": _PD_SEVERITY[alert.level],
            "timestamp": alert.occurred_at.astimezone(UTC).isoformat(),
            "group": alert.alert_type,
            "class": alert.alert_type,
            "custom_details": details,
        }
        if component:
            body["component"] = component
        return {
            "routing_key": self.routing_key,
            "event_action": "trigger",
            "dedup_key": alert.incident_key,
            "payload": body,
        }

    async def send(
        self, client: httpx.AsyncClient, alert: Alert, count: int, request_ids: Sequence[str]
    ) -> None:
        await post_json(client, self.events_url, self.payload(alert, count, request_ids))


@dataclass(frozen=True)
class GenericWebhook:
    """LiteLLM's webhook: the event object (budget_crossed, threshold_crossed, key_created, ...)."""

    url: str
    kind = "webhook"

    @property
    def label(self) -> str:
        return url_label("webhook", self.url)

    async def send(self, client: httpx.AsyncClient, event: Mapping[str, Any]) -> None:
        await post_json(client, self.url, event)


@dataclass(frozen=True)
class SmtpMailer:
    """E-mail over SMTP with LiteLLM's settings (SMTP_HOST, SMTP_PORT, SMTP_USERNAME, ...)."""

    host: str
    port: int = 587
    username: str | None = None
    password: str | None = None
    sender: str = "alerts@tollgate.local"
    start_tls: bool = True
    timeout_s: float = 10.0
    kind = "email"

    @property
    def label(self) -> str:
        return f"email:{self.host}:{self.port}"

    def message(self, alert: Alert, text: str, recipients: Sequence[str]) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = ", ".join(recipients)
        msg["Subject"] = f"Tollgate {alert.level} alert: {alert.alert_type}: {alert.headline}"[:200]
        msg["Date"] = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
        msg.set_content(text)
        return msg

    async def send(self, alert: Alert, text: str, recipients: Sequence[str]) -> None:
        try:
            await aiosmtplib.send(
                self.message(alert, text, recipients),
                hostname=self.host,
                port=self.port,
                username=self.username or None,
                password=self.password or None,
                start_tls=self.start_tls,
                timeout=self.timeout_s,
            )
        except aiosmtplib.SMTPResponseException as exc:
            transient = 400 <= exc.code < 500
            raise DeliveryError(
                f"SMTP {exc.code}: {exc.message}", retryable=transient, status=exc.code
            ) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}", retryable=True) from exc
