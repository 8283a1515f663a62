-- Keys, teams, members, users, models and team logging callbacks (schema `admin`).
-- Runs with search_path set to the admin schema.

CREATE TABLE teams (
    team_id          text PRIMARY KEY,
    team_alias       text,
    models           jsonb       NOT NULL DEFAULT '[]'::jsonb,
    max_budget       numeric,
    budget_duration  text,
    tpm_limit        bigint,
    rpm_limit        bigint,
    blocked          boolean     NOT NULL DEFAULT false,
    metadata         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    logging_disabled boolean     NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    user_id         text PRIMARY KEY,
    user_email      text,
    user_alias      text,
    user_role       text,
    models          jsonb       NOT NULL DEFAULT '[]'::jsonb,
    max_budget      numeric,
    budget_duration text,
    tpm_limit       bigint,
    rpm_limit       bigint,
    metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX users_email_idx ON users (user_email);

CREATE TABLE team_members (
    team_id    text        NOT NULL REFERENCES teams (team_id) ON DELETE CASCADE,
    user_id    text        NOT NULL,
    user_email text,
    role       text        NOT NULL CHECK (role IN ('admin', 'user')),
    added_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_user_idx ON team_members (user_id);

-- `token` is the SHA-256 hex of the key; the plaintext is never stored.
CREATE TABLE keys (
    token                 text PRIMARY KEY CHECK (token ~ '^[0-9a-f]{64}$'),
    key_name              text,
    key_alias             text UNIQUE,
    team_id               text REFERENCES teams (team_id),
    user_id               text,
    models                jsonb       NOT NULL DEFAULT '[]'::jsonb,
    max_budget            numeric,
    budget_duration       text,
    tpm_limit             bigint,
    rpm_limit             bigint,
    max_parallel_requests bigint,
    expires               timestamptz,
    blocked               boolean     NOT NULL DEFAULT false,
    metadata              jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_by            text,
    updated_by            text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX keys_team_idx ON keys (team_id);
CREATE INDEX keys_user_idx ON keys (user_id);

CREATE TABLE models (
    model_id       text PRIMARY KEY,
    model_name     text        NOT NULL,
    litellm_params jsonb       NOT NULL,
    model_info     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_by     text,
    updated_by     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE team_callbacks (
    id            bigserial PRIMARY KEY,
    team_id       text        NOT NULL REFERENCES teams (team_id) ON DELETE CASCADE,
    callback_name text        NOT NULL,
    callback_type text        NOT NULL
        CHECK (callback_type IN ('success', 'failure', 'success_and_failure')),
    callback_vars jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (team_id, callback_name, callback_type)
);

-- Events written in the same transaction as the change they describe; a relay
-- publishes them to JetStream and deletes them, so no audit event is lost.
CREATE TABLE outbox (
    seq        bigserial PRIMARY KEY,
    event_id   text        NOT NULL UNIQUE,
    payload    text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
