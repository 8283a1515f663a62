"""Outage alerts: timeouts and 5xx per deployment, and per provider region."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from tollgate_alerter.policy import AlertingArgs
from tollgate_alerter.rules.alert import Alert
from tollgate_alerter.rules.formatting import details_text, safe_api_base
from tollgate_alerter.rules.llm import is_llm_failure
from tollgate_shared.events import LlmRequestFailed
from tollgate_shared.events.llm import LlmRequestBase
from tollgate_shared.vocabulary import AlertType

OutageLevel = Literal["minor", "major"]


def outage_code(event: LlmRequestFailed) -> int | None:
    """The code an outage counts for this failure: timeouts (408) and 5xx only, else None."""
    if not is_llm_failure(event):
        return None
    code = event.upstream_status_code
    if code is None:
        if event.upstream_reachable and event.error_class != "Timeout":
            return None
        # Unreachable or timed out before any answer: the gateway's 502/504.
        code = 408 if event.error_class == "Timeout" else event.status_code
    if code == 408 or code >= 500:
        return code
    return None


def outage_levels(count: int, args: AlertingArgs) -> list[OutageLevel]:
    """The outage levels reached by `count` errors within the window."""
    levels: list[OutageLevel] = []
    if count >= args.minor_outage_alert_threshold:
        levels.append("minor")
    if count >= args.major_outage_alert_threshold:
        levels.append("major")
    return levels


def error_breakdown(codes: Iterable[int]) -> dict[str, int]:
    out = {"Timeout Errors": 0, "API Errors": 0, "Unknown Errors": 0}
    for code in codes:
        if code == 408:
            out["Timeout Errors"] += 1
        elif code >= 500:
            out["API Errors"] += 1
        else:
            out["Unknown Errors"] += 1
    return {k: v for k, v in out.items() if v}


def outage_alert(
    scope: Literal["Model", "Region"],
    name: str,
    level: OutageLevel,
    codes: Sequence[int],
    window_s: float,
    event: LlmRequestFailed,
    deployments: int = 1,
) -> Alert:
    details = {
        f"{scope} Name": name,
        "Provider": event.custom_llm_provider or "",
    }
    if scope == "Model":
        details["Model"] = event.model_group or event.requested_model
        details["Deployment"] = event.model_id or ""
        details["API Base"] = safe_api_base(event.api_base) or ""
    else:
        details["Deployments Affected"] = str(deployments)
    details = {k: v for k, v in details.items() if v}
    breakdown = error_breakdown(codes)
    errors = "".join(f"\n{kind}: {n}" for kind, n in breakdown.items())
    details["Errors"] = f"{len(codes)} in {window_s:g}s"
    alert_type = AlertType.OUTAGE_ALERTS if scope == "Model" else AlertType.REGION_OUTAGE_ALERTS
    title = "Major" if level == "major" else "Minor"
    subject = event.model_id or name if scope == "Model" else name
    return Alert(
        alert_type=alert_type,
        level="High" if level == "major" else "Medium",
        message=(
            f"\n*⚠️ {title} Service Outage*\n"
            + details_text(details)
            + f"\n\n*Errors:*{errors}\n\n*Last Request ID:* `{event.request_id}`"
        ),
        subject=f"{subject}/{level}",
        occurred_at=event.end_time,
        details=details | {f"Errors: {k}": str(v) for k, v in breakdown.items()},
        dedup_key=f"outage/{scope.lower()}/{subject}/{level}",
        dedup_ttl_s=window_s,
        request_id=event.request_id,
        squash=False,
    )


def region_of(event: LlmRequestBase) -> str | None:
    """`<provider>/<region>` when the deployment names its region, else None."""
    if not event.region:
        return None
    return f"{event.custom_llm_provider or 'openai'}/{event.region}"
