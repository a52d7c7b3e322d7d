-- Queue metrics per interval (CTR_INTERVAL_MINUTES: 15, 30 or 60), queue and channel, as Amazon Connect's
-- historical queue report defines them. A contact counts in the interval of its disconnect time by default
-- (CTR_INTERVAL_RULE), in the reporting time zone; queues are grouped by ARN with their current name; the
-- row with no queue holds the contacts that never had one (IVR-only). Counts: interval_counts.sql; rates and
-- averages: metric_macros.sql; service level at CTR_SERVICE_LEVEL_SECONDS; an interval not over when the
-- table was built is_partial.
WITH counted AS (
    SELECT * EXCLUDE (day, day_is_partial) RENAME (interval_is_partial AS is_partial)
    FROM interval_counts
),

final AS (
    SELECT * FROM with_queue_rates('counted')
)

SELECT * FROM final ORDER BY interval_start, queue_name, queue_arn, channel
