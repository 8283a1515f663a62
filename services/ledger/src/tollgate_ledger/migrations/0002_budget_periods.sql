-- Budget periods (`budget_duration`): spend since the current period began is
-- spend - period_base. The reset job moves period_base up to spend at each boundary,
-- so lifetime totals never change and a reset never loses or re-counts a cent.
ALTER TABLE spend_totals
    ADD COLUMN period_start timestamptz,
    ADD COLUMN period_base  numeric     NOT NULL DEFAULT 0,
    ADD COLUMN created_at   timestamptz NOT NULL DEFAULT now();
