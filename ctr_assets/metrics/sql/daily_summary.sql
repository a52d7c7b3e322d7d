-- The day at a glance, per channel (days of the reporting time zone): every contact, IVR-only ones included,
-- with the queue metrics of queue_interval_metrics summed over the day's intervals and queues. A day not over
-- when the table was built is_partial.
WITH source AS (
    SELECT * FROM interval_counts
),

counted AS (
    SELECT
        day,
        day_is_partial AS is_partial,
        channel,
        sum(COLUMNS(* EXCLUDE (interval_start, interval_end, interval_is_partial, day, day_is_partial, queue_arn,
                               queue_name, channel, max_queue_wait_seconds)))::BIGINT,
        max(max_queue_wait_seconds) AS max_queue_wait_seconds
    FROM source
    GROUP BY day, day_is_partial, channel
),

final AS (
    SELECT * FROM with_queue_rates('counted')
)

SELECT * FROM final ORDER BY day, channel
