-- Ledger schema: spend logs (daily partitions), the idempotency record, sessions,
-- daily aggregates, spend totals and the audit log. Names are unqualified: the
-- runner sets search_path to the target schema, so `rebuild` can apply the same
-- file into a scratch schema.

-- One row per LLM call, with LiteLLM's LiteLLM_SpendLogs columns plus a few of ours.
-- Partitioned by day on "startTime"; partitions are created on demand and retention
-- drops whole partitions.
CREATE TABLE spend_logs (
    request_id            text        NOT NULL,
    call_type             text        NOT NULL,
    api_key               text        NOT NULL DEFAULT '',
    spend                 numeric     NOT NULL DEFAULT 0,
    total_tokens          bigint      NOT NULL DEFAULT 0,
    prompt_tokens         bigint      NOT NULL DEFAULT 0,
    completion_tokens     bigint      NOT NULL DEFAULT 0,
    "startTime"           timestamptz NOT NULL,
    "endTime"             timestamptz NOT NULL,
    "completionStartTime" timestamptz,
    request_duration_ms   integer,
    model                 text        NOT NULL DEFAULT '',
    model_id              text        DEFAULT '',
    model_group           text        DEFAULT '',
    custom_llm_provider   text        DEFAULT '',
    api_base              text        DEFAULT '',
    "user"                text        DEFAULT '',
    metadata              jsonb       DEFAULT '{}',
    cache_hit             text        DEFAULT '',
    cache_key             text        DEFAULT '',
    request_tags          jsonb       DEFAULT '[]',
    team_id               text,
    organization_id       text,
    end_user              text,
    requester_ip_address  text,
    messages              jsonb,
    response              jsonb,
    proxy_server_request  jsonb,
    session_id            text,
    status                text        NOT NULL,
    -- Tollgate additions
    event_id              text        NOT NULL,
    key_alias             text,
    team_alias            text,
    cached_tokens         bigint      NOT NULL DEFAULT 0,
    reasoning_tokens      bigint      NOT NULL DEFAULT 0,
    stream                boolean     NOT NULL DEFAULT false,
    trace_id              text,
    region                text,
    error_class           text,
    error_message         text,
    error_code            text,
    status_code           integer,
    PRIMARY KEY (request_id, "startTime")
) PARTITION BY RANGE ("startTime");

CREATE INDEX spend_logs_start_idx ON spend_logs ("startTime" DESC);
CREATE INDEX spend_logs_api_key_idx ON spend_logs (api_key, "startTime" DESC);
CREATE INDEX spend_logs_user_idx ON spend_logs ("user", "startTime" DESC);
CREATE INDEX spend_logs_team_idx ON spend_logs (team_id, "startTime" DESC);
CREATE INDEX spend_logs_session_idx ON spend_logs (session_id, "startTime")
    WHERE session_id IS NOT NULL;
CREATE INDEX spend_logs_request_idx ON spend_logs (request_id);

-- What makes the spend consumer idempotent: a request is counted once. Written in
-- the same statement as every aggregate, so only rows inserted here add amounts.
-- Partitioned like spend_logs and dropped with it (a retained request cannot be
-- redelivered: JetStream only redelivers what was never acknowledged).
CREATE TABLE processed_requests (
    request_id   text        NOT NULL,
    "startTime"  timestamptz NOT NULL,
    event_id     text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (request_id, "startTime")
) PARTITION BY RANGE ("startTime");

CREATE TABLE sessions (
    session_id        text        PRIMARY KEY,
    first_seen        timestamptz NOT NULL,
    last_seen         timestamptz NOT NULL,
    request_count     bigint      NOT NULL DEFAULT 0,
    success_count     bigint      NOT NULL DEFAULT 0,
    failure_count     bigint      NOT NULL DEFAULT 0,
    spend             numeric     NOT NULL DEFAULT 0,
    prompt_tokens     bigint      NOT NULL DEFAULT 0,
    completion_tokens bigint      NOT NULL DEFAULT 0,
    total_tokens      bigint      NOT NULL DEFAULT 0
);

-- Spend per UTC day and dimension: key, team, user, end_user, model, tag.
CREATE TABLE daily_spend (
    day               date    NOT NULL,
    dimension         text    NOT NULL,
    dimension_id      text    NOT NULL,
    spend             numeric NOT NULL DEFAULT 0,
    prompt_tokens     bigint  NOT NULL DEFAULT 0,
    completion_tokens bigint  NOT NULL DEFAULT 0,
    total_tokens      bigint  NOT NULL DEFAULT 0,
    requests          bigint  NOT NULL DEFAULT 0,
    successes         bigint  NOT NULL DEFAULT 0,
    failures          bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (day, dimension, dimension_id)
);
CREATE INDEX daily_spend_dimension_idx ON daily_spend (dimension, dimension_id, day);

-- Lifetime spend of each key (hash), team, user and end user.
CREATE TABLE spend_totals (
    entity       text        NOT NULL,
    entity_id    text        NOT NULL,
    spend        numeric     NOT NULL DEFAULT 0,
    requests     bigint      NOT NULL DEFAULT 0,
    total_tokens bigint      NOT NULL DEFAULT 0,
    last_alias   text,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (entity, entity_id)
);

-- LiteLLM's LiteLLM_AuditLog columns; id is the AdminChanged event id (idempotent).
CREATE TABLE audit_log (
    id                 text        PRIMARY KEY,
    updated_at         timestamptz NOT NULL,
    changed_by         text,
    changed_by_api_key text,
    action             text        NOT NULL,
    table_name         text        NOT NULL,
    object_id          text        NOT NULL,
    before_value       jsonb,
    updated_values     jsonb
);
CREATE INDEX audit_log_updated_idx ON audit_log (updated_at DESC);
CREATE INDEX audit_log_object_idx ON audit_log (object_id, updated_at DESC);
