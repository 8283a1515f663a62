"""Tollgate's own operations alert: a supervised service or server crash-loops, then recovers."""

from __future__ import annotations

from tollgate_alerter.rules.alert import Alert, Level
from tollgate_alerter.rules.formatting import details_text
from tollgate_shared.events import ServiceCrashLoop
from tollgate_shared.vocabulary import AlertType

# One crash loop is claimed for this long (per condition): a redelivered or re-announced
# event of the same loop never alerts twice, while a later loop has a new `loop_id`.
CRASH_LOOP_CLAIM_TTL_S = 7 * 86400.0


def crash_loop_alert(event: ServiceCrashLoop) -> Alert:
    """`service_crash_loop`: High when the loop begins, Low when the unit runs stable again."""
    what = "server" if event.kind == "server" else "service"
    details = {
        "Service": event.service,
        "Host": event.host,
        "Restarts": str(event.restarts),
        "Last Exit Code": "" if event.last_exit_code is None else str(event.last_exit_code),
        "Log": event.log_file or "",
    }
    if event.condition == "crash_loop":
        level: Level = "High"
        retry = f"; next try in {event.retry_in_s:g}s" if event.retry_in_s is not None else ""
        headline = (
            f"Crash loop: the {what} `{event.service}` exited {event.exits} times within "
            f"{event.window_s:g}s on `{event.host}`; the supervisor keeps retrying it "
            f"(up to every 30s{retry})"
        )
    else:
        level = "Low"
        headline = f"Recovered: the {what} `{event.service}` is running again on `{event.host}`"
    details = {k: v for k, v in details.items() if v}
    return Alert(
        alert_type=AlertType.SERVICE_CRASH_LOOP,
        level=level,
        message=headline + details_text(details),
        subject=f"{event.host}/{event.service}",
        occurred_at=event.occurred_at,
        details=details,
        dedup_key=(f"crash_loop/{event.host}/{event.service}/{event.loop_id}/{event.condition}"),
        dedup_ttl_s=CRASH_LOOP_CLAIM_TTL_S,
        # Sent at once: neither waits in the anti-storm window nor folds into the other.
        squash=False,
    )
