-- The settings the metric definitions read (CTR_* variables), as a one-row table, so that every view and
-- aggregate reads them from one place and the DuckDB file says how its tables were counted.
SELECT
    CAST($service_level_seconds AS INTEGER) AS service_level_seconds,
    CAST($service_level_target AS DOUBLE) AS service_level_target,
    CAST($abandonment_rate_limit AS DOUBLE) AS abandonment_rate_limit,
    CAST($alert_min_queued AS INTEGER) AS alert_min_queued,
    CAST($report_timezone AS VARCHAR) AS report_timezone,
    CAST($interval_minutes AS INTEGER) AS interval_minutes,
    CAST($interval_rule AS VARCHAR) AS interval_rule,
    -- When the tables were built (UTC): an interval or day not over by then is partial.
    CAST($as_of AS TIMESTAMP) AS as_of
