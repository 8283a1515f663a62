"""Every subject, stream, durable consumer and KV bucket name, spelled once."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

# Ids that become subject tokens are restricted so a team id can never widen
# a subscription (no dots, no wildcards, no whitespace).
ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
_ID_RE = re.compile(ID_PATTERN)
NO_TEAM = "_"


def subject_token(value: str | None) -> str:
    """The subject token for an optional id: the id itself, or `_` for none."""
    if not value:
        return NO_TEAM
    if not _ID_RE.fullmatch(value):
        raise ValueError(f"id {value!r} must match {ID_PATTERN}")
    return value


# --- subjects -------------------------------------------------------------
LLM_REQUEST_STARTED = "llm.request.started.v1"
LLM_REQUEST_COMPLETED = "llm.request.completed.v1"
LLM_REQUEST_FAILED = "llm.request.failed.v1"
LLM_DEPLOYMENT_PREFIX = "llm.deployment"
ADMIN_PREFIX = "admin"
LEDGER_SPEND_UPDATED = "ledger.spend.updated.v1"
LEDGER_TRACKING_FAILED = "ledger.tracking.failed.v1"
LEDGER_DB_ERROR = "ledger.db.error.v1"
ALERT_SENT = "alert.sent.v1"
EXPORT_DEAD_LETTER = "export.deadletter.v1"
# Operations: the supervisor of `./just up` says when a service crash-loops and recovers.
OPS_SERVICE_PREFIX = "ops.service"


def llm_request_subject(base: str, team_id: str | None) -> str:
    """`llm.request.<kind>.v1.<team>` for one event."""
    return f"{base}.{subject_token(team_id)}"


def deployment_subject(state: str) -> str:
    return f"{LLM_DEPLOYMENT_PREFIX}.{state}.v1"


class AdminSubject(StrEnum):
    """Every management change admin publishes, by its full subject (grep for it)."""

    KEY_CREATED = "admin.key.created.v1"
    KEY_UPDATED = "admin.key.updated.v1"
    KEY_DELETED = "admin.key.deleted.v1"
    KEY_ROTATED = "admin.key.rotated.v1"
    KEY_BLOCKED = "admin.key.blocked.v1"
    KEY_UNBLOCKED = "admin.key.unblocked.v1"
    TEAM_CREATED = "admin.team.created.v1"
    TEAM_UPDATED = "admin.team.updated.v1"
    TEAM_DELETED = "admin.team.deleted.v1"
    TEAM_MEMBER_ADDED = "admin.team.member_added.v1"
    TEAM_MEMBER_REMOVED = "admin.team.member_removed.v1"
    TEAM_CALLBACK_ADDED = "admin.team.callback_added.v1"
    TEAM_LOGGING_DISABLED = "admin.team.logging_disabled.v1"
    USER_CREATED = "admin.user.created.v1"
    USER_UPDATED = "admin.user.updated.v1"
    USER_DELETED = "admin.user.deleted.v1"
    MODEL_CREATED = "admin.model.created.v1"
    MODEL_UPDATED = "admin.model.updated.v1"
    MODEL_DELETED = "admin.model.deleted.v1"

    @property
    def entity(self) -> str:
        return self.value.split(".")[1]

    @property
    def action(self) -> str:
        return self.value.split(".")[2]


def admin_subject(entity: str, action: str) -> str:
    """`admin.<entity>.<action>.v1`; placeholders (`{entity}`) pass through for templates."""
    subject = f"{ADMIN_PREFIX}.{entity}.{action}.v1"
    if entity.startswith("{") or subject in AdminSubject._value2member_map_:
        return subject
    raise ValueError(f"{subject!r} is not a management change admin publishes")


def alert_sent_subject(alert_type: str) -> str:
    return f"{ALERT_SENT}.{alert_type}"


def ops_service_subject(condition: str) -> str:
    """`ops.service.<condition>.v1`: `crash_loop` or `recovered`."""
    return f"{OPS_SERVICE_PREFIX}.{condition}.v1"


# --- streams ----------------------------------------------------------------
@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    description: str
    duplicate_window_s: float = 120.0
    max_age_s: float = 7 * 24 * 3600.0


STREAM_LLM = StreamSpec("LLM", ("llm.>",), "LLM request lifecycle and router events")
STREAM_ADMIN = StreamSpec(
    "ADMIN", ("admin.>",), "Management changes: the audit source", max_age_s=0.0
)
STREAM_LEDGER = StreamSpec("LEDGER", ("ledger.>",), "Ledger outcomes: spend totals, failures")
STREAM_ALERT = StreamSpec("ALERT", ("alert.>",), "Alerts delivered")
STREAM_EXPORT = StreamSpec("EXPORT", ("export.>",), "Exports that exhausted their retries")
STREAM_OPS = StreamSpec("OPS", ("ops.>",), "Operations: crash loops of supervised services")
# Where JetStream announces a message that ran out of deliveries on a durable.
MAX_DELIVERIES_ADVISORY = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"
# JetStream's advisories are plain messages, gone if nobody listens when they are sent; this
# stream keeps them, so one raised while no ledger runs is still recorded when one starts.
STREAM_ADVISORIES = StreamSpec(
    "ADVISORIES",
    (f"{MAX_DELIVERIES_ADVISORY}.>",),
    "JetStream's max-delivery advisories, kept until the ledger records them",
)
STREAMS: tuple[StreamSpec, ...] = (
    STREAM_LLM,
    STREAM_ADMIN,
    STREAM_LEDGER,
    STREAM_ALERT,
    STREAM_EXPORT,
    STREAM_OPS,
    STREAM_ADVISORIES,
)


# --- KV and object store buckets --------------------------------------------
KV_KEYS = "tollgate-keys"
KV_TEAMS = "tollgate-teams"
KV_USERS = "tollgate-users"
KV_MODELS = "tollgate-models"
KV_SPEND = "tollgate-spend"
KV_BUCKETS: tuple[str, ...] = (KV_KEYS, KV_TEAMS, KV_USERS, KV_MODELS, KV_SPEND)


@dataclass(frozen=True)
class BucketUse:
    """Who writes a KV bucket and who watches it (for the architecture map)."""

    bucket: str
    written_by: str
    read_by: tuple[str, ...]
    holds: str


BUCKET_USES: tuple[BucketUse, ...] = (
    BucketUse(KV_KEYS, "admin", ("ingress", "exporter", "ledger", "alerter"), "KeyState"),
    BucketUse(KV_TEAMS, "admin", ("ingress", "exporter", "ledger", "alerter"), "TeamState"),
    BucketUse(KV_USERS, "admin", ("ingress", "ledger", "alerter"), "UserState"),
    BucketUse(KV_MODELS, "admin", ("ingress",), "ModelState"),
    BucketUse(KV_SPEND, "ledger", ("ingress", "admin"), "SpendState"),
)


# --- durable pull consumers -------------------------------------------------
@dataclass(frozen=True)
class ConsumerSpec:
    """A durable pull consumer: `<service>-<purpose>`, with its redelivery policy."""

    name: str
    stream: str
    filter_subjects: tuple[str, ...]
    max_deliver: int = 8
    ack_wait_s: float = 30.0
    # Redelivery backoff between attempts; NATS needs len(backoff) <= max_deliver.
    backoff_s: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0)
    max_ack_pending: int = 20_000
    description: str = ""
    extra: dict[str, object] = field(default_factory=dict)
    # For the architecture map (docs/architecture.md): the modules a message passes
    # through, transport edge first, and what their effect writes (tables, buckets,
    # subjects, destinations).
    handled_by: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()

    @property
    def service(self) -> str:
        return self.name.split("-", 1)[0]


LEDGER_SPEND = ConsumerSpec(
    "ledger-spend",
    STREAM_LLM.name,
    (f"{LLM_REQUEST_COMPLETED}.*", f"{LLM_REQUEST_FAILED}.*"),
    description="spend logs, sessions, daily aggregates and spend totals",
    handled_by=(
        "tollgate_ledger.subscribers",
        "tollgate_ledger.service",
        "tollgate_ledger.rows",
        "tollgate_ledger.aggregates",
        "tollgate_ledger.projections.spend",
    ),
    writes=(
        "ledger.spend_logs",
        "ledger.processed_requests",
        "ledger.sessions",
        "ledger.daily_spend",
        "ledger.spend_totals",
        "ledger.spend_announcements",
        f"KV {KV_SPEND}",
        LEDGER_SPEND_UPDATED,
        LEDGER_TRACKING_FAILED,
        LEDGER_DB_ERROR,
    ),
)
LEDGER_AUDIT = ConsumerSpec(
    "ledger-audit",
    STREAM_ADMIN.name,
    ("admin.>",),
    description="audit log",
    handled_by=(
        "tollgate_ledger.subscribers",
        "tollgate_ledger.service",
        "tollgate_ledger.audit",
        "tollgate_ledger.projections.audit",
        "tollgate_ledger.projections.spend",
    ),
    # A key rotation carries the key's total over and is remembered for late spend.
    writes=(
        "ledger.audit_log",
        "ledger.key_rotations",
        "ledger.spend_totals",
        "ledger.spend_announcements",
        LEDGER_DB_ERROR,
    ),
)
EXPORTER_LLM = ConsumerSpec(
    "exporter-llm",
    STREAM_LLM.name,
    (f"{LLM_REQUEST_COMPLETED}.*", f"{LLM_REQUEST_FAILED}.*"),
    max_deliver=20,
    ack_wait_s=60.0,
    description="routes LLM events to external sinks",
    handled_by=(
        "tollgate_exporter.subscribers",
        "tollgate_exporter.service",
        "tollgate_exporter.routing",
        "tollgate_exporter.sinks",
    ),
    writes=("external sinks (Langfuse, OTLP, webhooks, …)", EXPORT_DEAD_LETTER),
)
ALERTER_LLM = ConsumerSpec(
    "alerter-llm",
    STREAM_LLM.name,
    ("llm.>",),
    description="LLM, outage and router alerts",
    handled_by=(
        "tollgate_alerter.subscribers",
        "tollgate_alerter.service",
        "tollgate_alerter.rules.llm",
        "tollgate_alerter.rules.outages",
        "tollgate_alerter.rules.router",
        "tollgate_alerter.delivery.dispatcher",
    ),
    writes=("Redis (counters, de-duplication)", "alert destinations", ALERT_SENT),
)
ALERTER_ADMIN = ConsumerSpec(
    "alerter-admin",
    STREAM_ADMIN.name,
    ("admin.>",),
    description="management alerts",
    handled_by=(
        "tollgate_alerter.subscribers",
        "tollgate_alerter.service",
        "tollgate_alerter.rules.management",
        "tollgate_alerter.delivery.dispatcher",
    ),
    writes=("alert destinations", ALERT_SENT),
)
ALERTER_LEDGER = ConsumerSpec(
    "alerter-ledger",
    STREAM_LEDGER.name,
    ("ledger.>",),
    description="budget and db alerts",
    handled_by=(
        "tollgate_alerter.subscribers",
        "tollgate_alerter.service",
        "tollgate_alerter.rules.budgets",
        "tollgate_alerter.rules.ledger",
        "tollgate_alerter.delivery.dispatcher",
    ),
    writes=("Redis (budget levels crossed)", "alert destinations", ALERT_SENT),
)
ALERTER_OPS = ConsumerSpec(
    "alerter-ops",
    STREAM_OPS.name,
    ("ops.>",),
    description="service crash-loop alerts",
    handled_by=(
        "tollgate_alerter.subscribers",
        "tollgate_alerter.service",
        "tollgate_alerter.rules.ops",
        "tollgate_alerter.delivery.dispatcher",
    ),
    writes=("Redis (one claim per service per crash loop)", "alert destinations", ALERT_SENT),
)


def max_deliveries_advisory(spec: ConsumerSpec) -> str:
    """The advisory subject of one durable's messages that ran out of deliveries."""
    return f"{MAX_DELIVERIES_ADVISORY}.{spec.stream}.{spec.name}"


LEDGER_DEAD_LETTERS = ConsumerSpec(
    "ledger-dead-letters",
    STREAM_ADVISORIES.name,
    (max_deliveries_advisory(LEDGER_SPEND), max_deliveries_advisory(LEDGER_AUDIT)),
    # Never given up on: an advisory waits (nak'ed, up to a minute at a time) while the
    # database cannot record it.
    max_deliver=-1,
    backoff_s=(5.0, 15.0, 60.0),
    description="dead letters: messages JetStream stopped delivering to the ledger",
    handled_by=("tollgate_ledger.subscribers", "tollgate_ledger.service"),
    writes=("ledger.dead_letters", LEDGER_TRACKING_FAILED),
)

CONSUMERS: tuple[ConsumerSpec, ...] = (
    LEDGER_SPEND,
    LEDGER_AUDIT,
    EXPORTER_LLM,
    ALERTER_LLM,
    ALERTER_ADMIN,
    ALERTER_LEDGER,
    ALERTER_OPS,
)
# Durables on JetStream's own messages (advisories), not on Tollgate events: provisioned and
# permitted like the others, outside the event catalog.
ADVISORY_CONSUMERS: tuple[ConsumerSpec, ...] = (LEDGER_DEAD_LETTERS,)
ALL_CONSUMERS: tuple[ConsumerSpec, ...] = (*CONSUMERS, *ADVISORY_CONSUMERS)

# Request/response bodies too large for one message travel here, by reference.
OBJ_BODIES = "tollgate-bodies"

# --- database schemas (one per owning service) --------------------------------
SCHEMA_ADMIN = "admin"
SCHEMA_LEDGER = "ledger"

# --- HTTP headers -------------------------------------------------------------
HDR_CALL_ID = "x-litellm-call-id"
HDR_RESPONSE_COST = "x-litellm-response-cost"
HDR_SESSION_ID = "x-litellm-session-id"
HDR_LITELLM_KEY = "x-litellm-api-key"
HDR_CHANGED_BY = "litellm-changed-by"
HDR_EVENT_TYPE = "Tollgate-Event"
