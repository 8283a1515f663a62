-- The Logs model filter matches `model` OR `model_group`; reads.spend_logs runs it as two
-- time-ordered branches: `model = m` (spend_logs_model_idx) and the rows whose group is m
-- under another model name (a deployment's provider model, e.g. openai/gpt-4o, under its
-- group gpt-4o). This expression index orders the second branch; being an expression index,
-- ANALYZE keeps statistics of its values, so the planner knows when a group has no such rows
-- and never walks the whole table looking for them.
CREATE INDEX spend_logs_group_only_idx ON spend_logs
    ((CASE WHEN model IS DISTINCT FROM model_group THEN model_group END), "startTime" DESC);
