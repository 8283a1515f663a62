"""Alerts on the ledger's failures: spend it could not track, database errors."""

from __future__ import annotations

from tollgate_alerter.rules.alert import EVENT_CLAIM_TTL_S, MAX_ERROR_CHARS, Alert
from tollgate_alerter.rules.formatting import details_text
from tollgate_shared.events import LedgerDbError, LedgerTrackingFailed
from tollgate_shared.vocabulary import AlertType


def db_error_alert(event: LedgerDbError) -> Alert:
    error = event.error[:MAX_ERROR_CHARS]
    return Alert(
        alert_type=AlertType.DB_EXCEPTIONS,
        level="High",
        message=(
            f"DB read/write call failed: `{error}`\n*Producer:* `{event.producer}`"
            f"\n*Batch Size:* `{event.batch_size}`"
        ),
        subject=f"{event.producer}/db",
        occurred_at=event.occurred_at,
        details={"Error": error, "Producer": event.producer, "Batch Size": str(event.batch_size)},
        dedup_key=f"event/{event.event_id}/{AlertType.DB_EXCEPTIONS}",
        dedup_ttl_s=EVENT_CLAIM_TTL_S,
    )


def tracking_failed_alert(event: LedgerTrackingFailed) -> Alert:
    error = event.error[:MAX_ERROR_CHARS]
    details = {"Subject": event.subject_name, "Error": error}
    if event.request_id:
        details["Request ID"] = event.request_id
    return Alert(
        alert_type=AlertType.FAILED_TRACKING_SPEND,
        level="High",
        message="Failed Tracking Cost for " + f"`{event.subject_name}`" + details_text(details),
        subject=event.subject_name.rsplit(".", 1)[0],
        occurred_at=event.occurred_at,
        details=details,
        dedup_key=f"event/{event.event_id}/{AlertType.FAILED_TRACKING_SPEND}",
        dedup_ttl_s=EVENT_CLAIM_TTL_S,
        request_id=event.request_id,
    )
