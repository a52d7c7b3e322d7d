-- Each contact as the reports count it under the settings in metric_settings: the interval and day it counts
-- in, in the reporting time zone (CTR_REPORT_TIMEZONE), and whether it left its queue within the service
-- level. Every aggregate counts from here, so each of these rules is written once.
WITH facts AS (
    SELECT * FROM contact_facts
),

settings AS (
    SELECT * FROM metric_settings
),

attributed AS (
    SELECT
        facts.*,
        -- The moment a contact counts (CTR_INTERVAL_RULE). `disconnect`, the default, is Connect's rule for its
        -- historical reports ("For a given interval, contact records whose disconnect date falls in the
        -- interval are selected to calculate metrics"), so the numbers reconcile with Connect's. `enqueue`
        -- counts a contact when it entered its queue (Connect's "Contacts queued (enqueue timestamp)"), so an
        -- interval's service level describes the demand that arrived in it; never queued: when initiated.
        timezone(settings.report_timezone, timezone('UTC', CASE settings.interval_rule
            WHEN 'enqueue' THEN coalesce(facts.enqueued_at, facts.initiated_at)
            ELSE facts.disconnected_at
        END)) AS counted_at,
        timezone(settings.report_timezone, timezone('UTC', settings.as_of)) AS as_of,
        to_minutes(settings.interval_minutes) AS interval_length,
        -- Service level X: "Percentage of contacts removed from the queue between 0 and X seconds after being
        -- added to it" (answered, abandoned, queued for callback or moved to another queue), X included:
        -- Queue.Duration <= CTR_SERVICE_LEVEL_SECONDS.
        facts.is_queued AND facts.queue_seconds <= settings.service_level_seconds AS is_within_service_level
    FROM facts
    CROSS JOIN settings
),

final AS (
    SELECT
        * EXCLUDE (as_of, interval_length),
        -- Intervals are wall-clock times of the reporting zone: on the day clocks go back, the repeated hour is
        -- one interval holding two hours of contacts.
        time_bucket(interval_length, counted_at) AS interval_start,
        time_bucket(interval_length, counted_at) + interval_length AS interval_end,
        CAST(counted_at AS DATE) AS day,
        -- An interval or day not over when the tables were built is partial: more contacts will count in it.
        time_bucket(interval_length, counted_at) + interval_length > as_of AS interval_is_partial,
        CAST(counted_at AS DATE) + INTERVAL 1 DAY > as_of AS day_is_partial
    FROM attributed
)

SELECT * FROM final
