-- Messages JetStream gave up on (its max-delivery advisory): the stream and sequence
-- to re-read them from, so `python -m tollgate_ledger replay-dead` can write them.
-- A row is replayed once; `outcome` says what the replay made of it.
CREATE TABLE dead_letters (
    stream       text        NOT NULL,
    stream_seq   bigint      NOT NULL,
    consumer     text        NOT NULL,
    deliveries   integer     NOT NULL DEFAULT 0,
    subject      text,
    request_id   text,
    captured_at  timestamptz NOT NULL DEFAULT now(),
    replayed_at  timestamptz,
    outcome      text,
    PRIMARY KEY (stream, stream_seq, consumer)
);
CREATE INDEX dead_letters_pending_idx ON dead_letters (captured_at) WHERE replayed_at IS NULL;

-- Each retention cleanup that ran: when, by which ledger, and what it dropped. The
-- latest row of a job says when it is next due, whichever replica runs it.
CREATE TABLE retention_runs (
    id          bigserial   PRIMARY KEY,
    job         text        NOT NULL,
    ran_at      timestamptz NOT NULL DEFAULT now(),
    runner      text        NOT NULL,
    dropped     jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX retention_runs_job_idx ON retention_runs (job, ran_at DESC);
