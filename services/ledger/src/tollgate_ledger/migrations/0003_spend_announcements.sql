-- Spend totals committed but not yet announced (KV bucket `tollgate-spend` and
-- `ledger.spend.updated.v1`): an outbox written in the same statement as the totals,
-- so a crash between commit and announcement loses nothing. One row per entity,
-- holding the latest total; the announcer deletes a row once that very total is out,
-- and a ledger that starts relays whatever is left.
CREATE TABLE spend_announcements (
    entity       text        NOT NULL,
    entity_id    text        NOT NULL,
    spend        numeric     NOT NULL,
    period_start timestamptz,
    queued_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (entity, entity_id)
);
