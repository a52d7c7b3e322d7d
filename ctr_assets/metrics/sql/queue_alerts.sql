-- Alerts: each queue of the latest complete interval in queue_interval_metrics (all channels together), with
-- its service level against CTR_SERVICE_LEVEL_TARGET and its abandonment rate against CTR_ABANDONMENT_RATE_LIMIT.
-- A queue alerts when one of them crosses its threshold and it had at least CTR_ALERT_MIN_QUEUED contacts queued
-- in the interval (fewer are too few to judge). An interval still running is not judged: its rates are
-- provisional, and the contacts that count in it first are the long ones that began in the interval before.
WITH settings AS (
    SELECT * FROM metric_settings
),

latest AS (
    SELECT * FROM queue_interval_metrics
    WHERE queue_arn IS NOT NULL
      AND interval_start = (SELECT max(interval_start) FROM queue_interval_metrics WHERE NOT is_partial)
),

counted AS (
    SELECT
        interval_start,
        interval_end,
        queue_arn,
        queue_name,
        sum(contacts_queued) AS contacts_queued,
        sum(contacts_within_service_level) AS contacts_within_service_level,
        sum(contacts_abandoned) AS contacts_abandoned
    FROM latest
    GROUP BY interval_start, interval_end, queue_arn, queue_name
),

final AS (
    SELECT
        counted.*,
        service_level(counted) AS service_level,
        abandonment_rate(counted) AS abandonment_rate,
        contacts_queued >= settings.alert_min_queued
            AND service_level(counted) * 100 < settings.service_level_target AS service_level_alert,
        contacts_queued >= settings.alert_min_queued
            AND abandonment_rate(counted) * 100 > settings.abandonment_rate_limit AS abandonment_alert,
        settings.service_level_target,
        settings.abandonment_rate_limit,
        settings.alert_min_queued
    FROM counted
    CROSS JOIN settings
)

SELECT * FROM final ORDER BY queue_name, queue_arn
