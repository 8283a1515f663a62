-- The Logs model filter matches `model` OR `model_group`; reads.spend_logs runs it as two
-- time-ordered branches: `model = m` (spend_logs_model_idx) and the rows whose group differs
-- from their model. This partial index orders the second branch, and holds only the rows
-- where the two names differ (a deployment's provider model, e.g. openai/gpt-4o, under its
-- group gpt-4o), so neither branch reads rows it then throws away.
CREATE INDEX spend_logs_model_group_other_idx ON spend_logs (model_group, "startTime" DESC)
    WHERE model IS DISTINCT FROM model_group;
