"""Delivers alerts: cross-replica claims, anti-storm folding, fan-out with retries, AlertSent.

`submit` is the consumers' entry point and returns quickly: it claims the
alert's dedup key in Redis (so two replicas, or a redelivered event, send once),
then either folds it into an open anti-storm bucket (same type and subject
within `window_s` -> one message with `[Num Alerts: N]`) or starts delivery.
Delivery fans out to every destination at once, each with its own retries, so
one failing destination never delays the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from tollgate_alerter import metrics
from tollgate_alerter.delivery.destinations import (
    DeliveryError,
    GenericWebhook,
    PagerDuty,
    RetryPolicy,
    SlackWebhook,
    SmtpMailer,
    send_with_retry,
)
from tollgate_alerter.policy import AlertPolicy
from tollgate_alerter.rules import Alert, health_check_alert, slack_text
from tollgate_shared.events import AlertSent
from tollgate_shared.vocabulary import AlertType

log = logging.getLogger(__name__)

PRODUCER = "alerter"
DESTINATION_KINDS = ("slack", "pagerduty", "webhook", "email")


class Claims(Protocol):
    async def claim(self, key: str, ttl_s: float) -> bool: ...


@dataclass(frozen=True)
class Destinations:
    """The configured endpoints (from the environment, as LiteLLM reads them)."""

    slack_default: str | None = None
    webhook: GenericWebhook | None = None
    pagerduty: PagerDuty | None = None
    mailer: SmtpMailer | None = None
    email_to: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    destination: str
    kind: str
    ok: bool
    error: str | None = None


@dataclass
class _Bucket:
    first: Alert
    count: int = 1
    request_ids: list[str] = field(default_factory=list)


class Dispatcher:
    def __init__(
        self,
        policy: AlertPolicy,
        destinations: Destinations,
        client: httpx.AsyncClient,
        claims: Claims,
        publish: Callable[[AlertSent], Awaitable[None]] | None = None,
        *,
        window_s: float = 10.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.policy = policy
        self.destinations = destinations
        self._client = client
        self._claims = claims
        self._publish = publish
        self._window_s = window_s
        self._retry = retry or RetryPolicy()
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._timers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._inflight: set[asyncio.Task[Any]] = set()

    # -- entry points ----------------------------------------------------------------
    async def claim(self, alert_type: AlertType, key: str, ttl_s: float) -> bool:
        """Claim a dedup key in Redis; False (counted as suppressed) when it was taken."""
        if await self._claims.claim(key, ttl_s):
            return True
        metrics.ALERTS_SUPPRESSED.labels(alert_type, "dedup").inc()
        return False

    async def submit(self, alert: Alert, *, claimed: bool = False) -> bool:
        """Queue an alert for delivery; False when it is disabled or was already sent.

        `claimed`: the caller already holds the alert's dedup key (see `claim`).
        """
        if not self.policy.enabled(alert.alert_type):
            return False
        if (
            alert.dedup_key
            and not claimed
            and not await self.claim(alert.alert_type, alert.dedup_key, alert.dedup_ttl_s or 3600.0)
        ):
            return False
        if not alert.squash or self._window_s <= 0:
            self._spawn(self.deliver(alert))
            return True
        key = (alert.alert_type, alert.subject)
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.count += 1
            if alert.request_id:
                bucket.request_ids.append(alert.request_id)
            metrics.ALERTS_SUPPRESSED.labels(alert.alert_type, "storm").inc()
            return True
        self._buckets[key] = _Bucket(alert, 1, [alert.request_id] if alert.request_id else [])
        self._timers[key] = asyncio.create_task(self._flush_later(key))
        return True

    async def deliver(
        self,
        alert: Alert,
        count: int = 1,
        request_ids: Sequence[str] = (),
        only: Collection[str] | None = None,
        *,
        record: bool = True,
    ) -> list[Outcome]:
        """Send to every destination that wants this alert, concurrently; publish AlertSent.

        `only` limits the destination kinds; `record=False` skips AlertSent (test alerts).
        """
        text = slack_text(alert, datetime.now(UTC), count, request_ids)
        if self.policy.args.log_to_console:
            log.warning("alert payload: %s", {"text": text})
        sends = self._plan(alert, text, count, request_ids, only)
        if not sends:
            log.info("no destination configured for %s", alert.alert_type)
            return []
        outcomes = await asyncio.gather(*(self._attempt(alert, *s) for s in sends))
        delivered = [o.destination for o in outcomes if o.ok]
        if delivered and record and self._publish is not None:
            try:
                await self._publish(
                    AlertSent(
                        producer=PRODUCER,
                        alert_type=alert.alert_type,
                        level=alert.level,
                        message=text,
                        destinations=delivered,
                        dedup_key=alert.dedup_key,
                        count=count,
                    )
                )
            except Exception as exc:  # the alert went out; only its record is missing
                log.warning("could not publish AlertSent for %s: %s", alert.alert_type, exc)
        return list(outcomes)

    async def test_slack(self) -> list[Outcome]:
        """A test message to every configured Slack-compatible URL (`/health/services`)."""
        by_url: dict[str, AlertType] = {}
        if self.destinations.slack_default:
            by_url[self.destinations.slack_default] = AlertType.BUDGET_ALERTS
        for alert_type, urls in self.policy.webhook_urls.items():
            if self.policy.enabled(alert_type):
                for url in urls:
                    by_url.setdefault(url, alert_type)
        now = datetime.now(UTC)
        attempts = []
        for url, alert_type in by_url.items():
            alert = health_check_alert(alert_type, now, url != self.destinations.slack_default)
            slack = SlackWebhook(url)
            text = slack_text(alert, now)
            attempts.append(
                self._attempt(alert, slack.label, "slack", _bind(slack.send, self._client, text))
            )
        return list(await asyncio.gather(*attempts))

    async def close(self, timeout: float = 20.0) -> None:
        """Send whatever is waiting in anti-storm buckets now, then wait for deliveries."""
        for task in self._timers.values():
            task.cancel()
        self._timers.clear()
        for key in list(self._buckets):
            self._flush_now(key)
        if self._inflight:
            _, pending = await asyncio.wait(self._inflight, timeout=timeout)
            for task in pending:
                task.cancel()

    # -- internals ---------------------------------------------------------------------
    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _flush_later(self, key: tuple[str, str]) -> None:
        await asyncio.sleep(self._window_s)
        self._timers.pop(key, None)
        self._flush_now(key)

    def _flush_now(self, key: tuple[str, str]) -> None:
        bucket = self._buckets.pop(key, None)
        if bucket is not None:
            self._spawn(self.deliver(bucket.first, bucket.count, bucket.request_ids))

    def _plan(
        self,
        alert: Alert,
        text: str,
        count: int,
        request_ids: Sequence[str],
        only: Collection[str] | None,
    ) -> list[tuple[str, str, Callable[[], Awaitable[None]]]]:
        """(label, kind, send) for every destination this alert goes to."""
        want = set(only) if only is not None else set(DESTINATION_KINDS)
        d = self.destinations
        sends: list[tuple[str, str, Callable[[], Awaitable[None]]]] = []
        if "slack" in want and self.policy.slack_enabled:
            for url in self.policy.slack_urls(alert.alert_type, d.slack_default):
                slack = SlackWebhook(url)
                sends.append((slack.label, "slack", _bind(slack.send, self._client, text)))
        pd = d.pagerduty
        if (
            "pagerduty" in want
            and "pagerduty" in self.policy.destinations
            and pd is not None
            and (only is not None or pd.wants(alert))
        ):
            sends.append(
                (pd.label, "pagerduty", _bind(pd.send, self._client, alert, count, request_ids))
            )
        hook = d.webhook
        if (
            "webhook" in want
            and "webhook" in self.policy.destinations
            and hook is not None
            and alert.webhook_event is not None
        ):
            sends.append(
                (hook.label, "webhook", _bind(hook.send, self._client, alert.webhook_event))
            )
        mailer = d.mailer
        recipients = tuple(dict.fromkeys((*d.email_to, *alert.email_to)))
        if "email" in want and "email" in self.policy.destinations and mailer and recipients:
            sends.append((mailer.label, "email", _bind(mailer.send, alert, text, recipients)))
        return sends

    async def _attempt(
        self, alert: Alert, label: str, kind: str, send: Callable[[], Awaitable[None]]
    ) -> Outcome:
        try:
            tries = await send_with_retry(send, self._retry)
        except DeliveryError as exc:
            metrics.ALERTS_FAILED.labels(alert.alert_type, kind).inc()
            log.warning("alert %s to %s failed: %s", alert.alert_type, label, exc)
            return Outcome(label, kind, False, str(exc))
        except Exception as exc:  # a bug in one destination must not stop the others
            metrics.ALERTS_FAILED.labels(alert.alert_type, kind).inc()
            log.exception("alert %s to %s failed", alert.alert_type, label)
            return Outcome(label, kind, False, f"{type(exc).__name__}: {exc}")
        if tries > 1:
            metrics.DELIVERY_RETRIES.labels(kind).inc(tries - 1)
        metrics.ALERTS_SENT.labels(alert.alert_type, kind).inc()
        return Outcome(label, kind, True)


def _bind(fn: Callable[..., Awaitable[None]], *args: Any) -> Callable[[], Awaitable[None]]:
    async def call() -> None:
        await fn(*args)

    return call
