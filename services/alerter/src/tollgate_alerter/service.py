"""The alerter's service layer: one use case per event kind, wired to rules, state and delivery.

Use cases take their collaborators as protocols (state in Redis, the dispatcher,
a directory of key/team/user names) so tests can pass real or fake ones.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol

from tollgate_alerter import rules
from tollgate_alerter.delivery import Dispatcher, Outcome
from tollgate_alerter.policy import AlertPolicy
from tollgate_alerter.rules import Alert, DeploymentStats, EntityInfo
from tollgate_alerter.state import SPEND_SCALE, Effects, WindowCount
from tollgate_shared.events import (
    AdminChanged,
    DeploymentStateChanged,
    Event,
    LedgerDbError,
    LedgerSpendUpdated,
    LedgerTrackingFailed,
    LlmRequestCompleted,
    LlmRequestFailed,
    LlmRequestFinished,
    LlmRequestStarted,
    ServiceCrashLoop,
)
from tollgate_shared.state import hash_key
from tollgate_shared.vocabulary import AlertType

__all__ = [
    "SLACK_SERVICES",
    "Alerter",
    "Directory",
    "Effects",
    "NoDirectory",
    "NotConfiguredError",
    "Outcome",
    "SelfTest",
    "Sink",
    "State",
    "deployment_info",
    "spend_fields",
]

log = logging.getLogger(__name__)

REPORT_LOCK_TTL_S = 120.0
# `/health/services?service=` values that test the Slack-compatible destinations.
SLACK_SERVICES = ("slack", "slack_budget_alerts")


class Sink(Protocol):
    async def claim(self, alert_type: AlertType, key: str, ttl_s: float) -> bool: ...

    async def submit(self, alert: Alert, *, claimed: bool = False) -> bool: ...


class State(Protocol):
    async def outage_hit(
        self, scope: str, subject: str, member: str, at: float, window_s: float, max_size: int
    ) -> WindowCount: ...

    async def region_hit(
        self, region: str, deployment: str, member: str, at: float, window_s: float, max_size: int
    ) -> WindowCount: ...

    async def window_codes(
        self, scope: str, subject: str, at: float, window_s: float
    ) -> list[int]: ...

    async def apply(self, effects: Effects, remember_finished_s: float) -> None: ...

    async def take_hanging(self, now: float, limit: int = 100) -> list[tuple[str, str]]: ...

    async def record_fallback(self, route: str) -> None: ...

    async def take_aggregates(self, *names: str) -> list[dict[str, str]]: ...

    async def deployments(self) -> dict[str, dict[str, str]]: ...

    def lock(self, name: str, ttl_s: float) -> AbstractAsyncContextManager[bool]: ...

    async def last_run(self, name: str) -> float | None: ...

    async def set_last_run(self, name: str, at: float) -> None: ...


class Directory(Protocol):
    def entity(self, entity: str, entity_id: str) -> EntityInfo: ...


class NoDirectory:
    def entity(self, entity: str, entity_id: str) -> EntityInfo:
        return EntityInfo()


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Alerter:
    policy: AlertPolicy
    state: State
    sink: Sink
    directory: Directory
    fallback_every_s: float = 7 * 86400.0
    clock: Callable[[], datetime] = _now

    # -- dispatch --------------------------------------------------------------------
    async def handle(self, event: Event) -> None:
        """Evaluate one event and write its state changes (a batch of one)."""
        effects = Effects()
        await self.evaluate(event, effects)
        await self.commit(effects)

    async def evaluate(self, event: Event, effects: Effects) -> None:
        """Run the event's rules; hanging-request bookkeeping and report aggregates are added
        to `effects` (written by `commit`), everything else happens now."""
        if isinstance(event, LlmRequestStarted):
            self.on_started(event, effects)
        elif isinstance(event, LlmRequestCompleted):
            await self.on_completed(event, effects)
        elif isinstance(event, LlmRequestFailed):
            await self.on_failed(event, effects)
        elif isinstance(event, DeploymentStateChanged):
            await self.on_deployment(event)
        elif isinstance(event, AdminChanged):
            await self.on_admin(event)
        elif isinstance(event, LedgerSpendUpdated):
            await self.on_spend(event)
        elif isinstance(event, LedgerDbError):
            await self._submit(rules.db_error_alert(event))
        elif isinstance(event, LedgerTrackingFailed):
            await self._submit(rules.tracking_failed_alert(event))
        elif isinstance(event, ServiceCrashLoop):
            await self._submit(rules.crash_loop_alert(event))

    async def commit(self, effects: Effects) -> None:
        """Write what a batch of events changed in the shared state, in one round trip."""
        await self.state.apply(effects, self._remember_finished_s)

    async def _submit(self, alert: Alert | None) -> None:
        if alert is not None and self.policy.enabled(alert.alert_type):
            await self.sink.submit(alert)

    # -- LLM requests ----------------------------------------------------------------
    @property
    def _remember_finished_s(self) -> float:
        return self.policy.threshold_s * 2 + 300

    def on_started(self, event: LlmRequestStarted, effects: Effects) -> None:
        if not self.policy.enabled(AlertType.LLM_REQUESTS_HANGING):
            return
        deadline = rules.hanging_deadline(event.start_time, self.clock(), self.policy.threshold_s)
        effects.start(event.request_id, deadline, rules.hanging_record(event))

    def _finished(self, event: LlmRequestFinished, effects: Effects) -> None:
        if self.policy.enabled(AlertType.LLM_REQUESTS_HANGING):
            effects.finish(event.request_id)

    async def on_completed(self, event: LlmRequestCompleted, effects: Effects) -> None:
        if self.policy.enabled(AlertType.LLM_TOO_SLOW):
            await self._submit(rules.slow_alert(event, self.policy.threshold_s))
        spend = self.policy.enabled(AlertType.SPEND_REPORTS)
        daily = self.policy.enabled(AlertType.DAILY_REPORTS) and event.model_id is not None
        fields = spend_fields(event) if spend else {}
        info = deployment_info(event) if daily else ""
        self._finished(event, effects)
        if spend or daily:
            effects.completion(
                fields,
                event.model_id if daily else None,
                info,
                (event.end_time - event.start_time).total_seconds(),
                event.completion_tokens,
            )

    async def on_failed(self, event: LlmRequestFailed, effects: Effects) -> None:
        if self.policy.enabled(AlertType.LLM_EXCEPTIONS):
            await self._submit(rules.exception_alert(event))
        self._finished(event, effects)
        if (
            event.model_id
            and self.policy.enabled(AlertType.DAILY_REPORTS)
            and rules.is_llm_failure(event)
        ):
            effects.failure(event.model_id, deployment_info(event))
        code = rules.outage_code(event)
        if code is None or event.model_id is None:
            return
        member = f"{event.event_id}|{code}"
        at = event.end_time.timestamp()
        args = self.policy.args
        if self.policy.enabled(AlertType.OUTAGE_ALERTS):
            hit = await self.state.outage_hit(
                "model",
                event.model_id,
                member,
                at,
                args.outage_alert_ttl,
                args.max_outage_alert_list_size,
            )
            for level in rules.outage_levels(hit.errors, args):
                key = f"outage/model/{event.model_id}/{level}"
                if await self.sink.claim(AlertType.OUTAGE_ALERTS, key, args.outage_alert_ttl):
                    codes = await self.state.window_codes(
                        "model", event.model_id, at, args.outage_alert_ttl
                    )
                    name = event.model or event.model_group or event.model_id
                    alert = rules.outage_alert(
                        "Model", name, level, codes, args.outage_alert_ttl, event
                    )
                    await self.sink.submit(alert, claimed=True)
        region = rules.region_of(event)
        if region and self.policy.enabled(AlertType.REGION_OUTAGE_ALERTS):
            window = args.region_outage_alert_ttl
            hit = await self.state.region_hit(
                region, event.model_id, member, at, window, args.max_outage_alert_list_size
            )
            if hit.deployments <= 1:
                return  # one bad deployment is not a regional outage
            for level in rules.outage_levels(hit.errors, args):
                key = f"outage/region/{region}/{level}"
                if await self.sink.claim(AlertType.REGION_OUTAGE_ALERTS, key, window):
                    codes = await self.state.window_codes("region", region, at, window)
                    alert = rules.outage_alert(
                        "Region", region, level, codes, window, event, hit.deployments
                    )
                    await self.sink.submit(alert, claimed=True)

    async def on_deployment(self, event: DeploymentStateChanged) -> None:
        if self.policy.enabled(AlertType.COOLDOWN_DEPLOYMENT):
            await self._submit(rules.cooldown_alert(event))
        route = rules.fallback_field(event)
        if route and self.policy.enabled(AlertType.FALLBACK_REPORTS):
            await self.state.record_fallback(route)

    # -- admin and ledger --------------------------------------------------------------
    async def on_admin(self, event: AdminChanged) -> None:
        await self._submit(rules.management_alert(event))

    async def on_spend(self, event: LedgerSpendUpdated) -> None:
        if not self.policy.enabled(AlertType.BUDGET_ALERTS):
            return
        for total in event.totals:
            info = self.directory.entity(total.entity, total.entity_id)
            await self._submit(rules.budget_alert(total, info, self.policy.args.budget_alert_ttl))

    # -- periodic work -------------------------------------------------------------------
    async def check_hanging(self) -> int:
        """Alert on every tracked request past its deadline (each claimed by one replica)."""
        if not self.policy.enabled(AlertType.LLM_REQUESTS_HANGING):
            return 0
        now = self.clock()
        due = await self.state.take_hanging(now.timestamp())
        for request_id, record in due:
            try:
                alert = rules.hanging_alert(request_id, record, now, self.policy.threshold_s)
            except (ValueError, KeyError) as exc:
                log.warning("unreadable hanging-request record for %s: %s", request_id, exc)
                continue
            await self.sink.submit(alert)
        return len(due)

    async def run_due_reports(self) -> list[str]:
        """Send each scheduled report whose period is over; a Redis lock picks one replica."""
        schedule = (
            (AlertType.DAILY_REPORTS, self.policy.args.daily_report_frequency, self._daily_report),
            (AlertType.SPEND_REPORTS, self.policy.spend_report_every_s, self._spend_report),
            (AlertType.FALLBACK_REPORTS, self.fallback_every_s, self._fallback_report),
        )
        sent: list[str] = []
        for name, every_s, build in schedule:
            if not self.policy.enabled(name):
                continue
            async with self.state.lock(f"report/{name}", REPORT_LOCK_TTL_S) as mine:
                if not mine:
                    continue
                now = self.clock()
                last = await self.state.last_run(name)
                if last is None:
                    await self.state.set_last_run(name, now.timestamp())  # the clock starts now
                    continue
                if now.timestamp() - last < every_s:
                    continue
                start = datetime.fromtimestamp(last, UTC)
                alert = await build(start, now, every_s)
                await self.state.set_last_run(name, now.timestamp())
                if alert is not None and await self.sink.submit(alert):
                    sent.append(name)
        return sent

    async def _daily_report(self, start: datetime, end: datetime, every_s: float) -> Alert | None:
        failed, latency, tokens, ok = await self.state.take_aggregates(
            "failed", "latency", "tokens", "ok"
        )
        known = await self.state.deployments()
        stats = []
        for model_id in set(failed) | set(latency):
            info = known.get(model_id, {})
            stats.append(
                DeploymentStats(
                    label=info.get("label") or model_id,
                    api_base=info.get("api_base") or "",
                    failed=int(failed.get(model_id, 0)),
                    latency_s=float(latency.get(model_id, 0.0)),
                    output_tokens=int(tokens.get(model_id, 0)),
                    successes=int(ok.get(model_id, 0)),
                )
            )
        next_run = datetime.fromtimestamp(end.timestamp() + every_s, UTC)
        return rules.daily_report(stats, start, end, next_run)

    async def _spend_report(self, start: datetime, end: datetime, every_s: float) -> Alert | None:
        (raw,) = await self.state.take_aggregates("spend")
        sums = {k: Decimal(v) / SPEND_SCALE for k, v in raw.items()}
        return rules.spend_report(sums, start, end)

    async def _fallback_report(
        self, start: datetime, end: datetime, every_s: float
    ) -> Alert | None:
        (raw,) = await self.state.take_aggregates("fallbacks")
        return rules.fallback_report({k: int(v) for k, v in raw.items()}, start, end)


def spend_fields(event: LlmRequestCompleted) -> dict[str, Decimal]:
    """The report lines one call's spend counts towards: its team, key, model and tags."""
    if event.spend <= 0:
        return {}
    team = event.team_alias or event.team_id or "(no team)"
    key = event.key_alias or (f"…{event.api_key_hash[-8:]}" if event.api_key_hash else "(no key)")
    out = {
        f"team:{team}": event.spend,
        f"key:{key}": event.spend,
        f"model:{event.model_group or event.requested_model}": event.spend,
    }
    for tag in dict.fromkeys(event.tags):
        out[f"tag:{tag}"] = event.spend
    return out


def deployment_info(event: LlmRequestFinished) -> str:
    name = event.model or event.model_group or event.requested_model
    return _deployment_info(name, event.model_id, event.api_base)


@functools.lru_cache(maxsize=1024)
def _deployment_info(name: str, model_id: str | None, api_base: str | None) -> str:
    # The same few deployments on every call: worked out once each.
    return json.dumps(
        {
            "label": f"{name} ({model_id})" if model_id else name,
            "api_base": rules.safe_api_base(api_base) or "",
        }
    )


class NotConfiguredError(Exception):
    """The alerting service to test is not set up; the message says what is missing."""


@dataclass
class SelfTest:
    """LiteLLM's alerting self-test (`/health/services`): a test alert through one service."""

    dispatcher: Dispatcher
    clock: Callable[[], datetime] = _now

    @property
    def alert_types(self) -> list[str]:
        return sorted(self.dispatcher.policy.alert_types)

    async def run(self, service: str, presented_key: str | None) -> list[Outcome]:
        """Send the test alert; raises `NotConfiguredError` when `service` cannot be tested."""
        policy = self.dispatcher.policy
        dest = self.dispatcher.destinations
        now = self.clock()
        if service in SLACK_SERVICES:
            if not policy.slack_enabled:
                raise NotConfiguredError(_not_in_config(service))
            if not policy.all_slack_urls(dest.slack_default):
                raise NotConfiguredError(
                    "slack is in general_settings.alerting but no webhook URL is configured: set "
                    "SLACK_WEBHOOK_URL or general_settings.alert_to_webhook_url"
                )
            return await self.dispatcher.test_slack()
        if service not in policy.destinations:
            raise NotConfiguredError(_not_in_config(service))
        if service == "webhook":
            if dest.webhook is None:
                raise NotConfiguredError("webhook alerting needs WEBHOOK_URL")
            token = hash_key(presented_key) if presented_key else None
            alert = replace(
                rules.health_check_alert(AlertType.BUDGET_ALERTS, now),
                webhook_event=rules.health_check_webhook_event(token),
            )
            return await self.dispatcher.deliver(alert, only=("webhook",), record=False)
        if service == "email":
            if dest.mailer is None or not dest.email_to:
                raise NotConfiguredError(
                    "email alerting needs SMTP_HOST and recipients in TOLLGATE_ALERT_EMAIL_TO"
                )
            alert = rules.health_check_alert(AlertType.BUDGET_ALERTS, now)
            return await self.dispatcher.deliver(alert, only=("email",), record=False)
        if dest.pagerduty is None:
            raise NotConfiguredError("pagerduty alerting needs PAGERDUTY_API_KEY")
        alert = rules.health_check_alert(AlertType.LLM_EXCEPTIONS, now)
        return await self.dispatcher.deliver(alert, only=("pagerduty",), record=False)


def _not_in_config(service: str) -> str:
    return f'"{service}" not in proxy config: general_settings. Unable to test this.'
