-- The console's Logs filters at millions of rows (each index serves a filter's page and
-- its capped count; key, team, user, session and request id were indexed in 0001).
CREATE INDEX spend_logs_key_alias_idx ON spend_logs (key_alias, "startTime" DESC);
CREATE INDEX spend_logs_end_user_idx ON spend_logs (end_user, "startTime" DESC);
CREATE INDEX spend_logs_model_group_idx ON spend_logs (model_group, "startTime" DESC);
CREATE INDEX spend_logs_model_idx ON spend_logs (model, "startTime" DESC);
-- Failures are few: a partial index finds them without reading the successes.
CREATE INDEX spend_logs_failures_idx ON spend_logs ("startTime" DESC) WHERE status = 'failure';
CREATE INDEX spend_logs_tags_idx ON spend_logs USING gin (request_tags jsonb_path_ops);
