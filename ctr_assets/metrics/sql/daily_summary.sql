-- The day at a glance, per channel: every contact (IVR-only ones included), with the queue and agent
-- metrics defined as in queue_interval_metrics.sql. Days are in the reporting time zone
-- (CTR_REPORT_TIMEZONE); a contact counts on the day it entered its queue, or was initiated if never queued.
WITH source AS (
    SELECT
        *,
        CAST(timezone($report_timezone, timezone('UTC', counted_at)) AS DATE) AS day
    FROM contact_facts
),

counted AS (
    SELECT
        day,
        channel,
        count(*) AS contacts,
        count(*) FILTER (WHERE is_queued) AS contacts_queued,
        count(*) FILTER (WHERE is_handled) AS contacts_handled,
        count(*) FILTER (WHERE is_queued AND is_handled) AS contacts_answered,
        count(*) FILTER (WHERE is_abandoned) AS contacts_abandoned,
        count(*) FILTER (WHERE is_queued AND queue_seconds <= $service_level_seconds) AS contacts_within_service_level,
        avg(queue_seconds) FILTER (WHERE is_queued AND is_handled) AS avg_queue_answer_seconds,
        max(queue_seconds) FILTER (WHERE is_queued) AS max_queue_wait_seconds,
        avg(handle_seconds) FILTER (WHERE is_handled) AS avg_handle_seconds,
        count(*) FILTER (WHERE is_handled AND is_put_on_hold) AS contacts_put_on_hold,
        avg(hold_seconds) FILTER (WHERE is_handled AND is_put_on_hold) AS avg_hold_seconds,
        count(*) FILTER (WHERE is_transferred_out) AS transfers_out,
        count(*) FILTER (WHERE is_callback) AS callbacks,
        count(*) FILTER (WHERE is_handled AND agent_hung_up_first) AS contacts_agent_hung_up_first,
        -- Totals behind the averages, so that a longer period re-aggregates exactly.
        coalesce(sum(queue_seconds) FILTER (WHERE is_queued AND is_handled), 0)::BIGINT AS queue_answer_seconds,
        coalesce(sum(handle_seconds) FILTER (WHERE is_handled), 0)::BIGINT AS handle_seconds,
        coalesce(sum(hold_seconds) FILTER (WHERE is_handled AND is_put_on_hold), 0)::BIGINT AS hold_seconds
    FROM source
    GROUP BY day, channel
),

final AS (
    SELECT
        day,
        channel,
        contacts,
        contacts_queued,
        contacts_handled,
        contacts_answered,
        contacts_abandoned,
        contacts_abandoned / nullif(contacts_queued, 0) AS abandonment_rate,
        contacts_within_service_level,
        contacts_within_service_level / nullif(contacts_queued, 0) AS service_level,
        $service_level_seconds AS service_level_seconds,
        avg_queue_answer_seconds,
        max_queue_wait_seconds,
        avg_handle_seconds,
        contacts_put_on_hold,
        avg_hold_seconds,
        transfers_out,
        callbacks,
        contacts_agent_hung_up_first,
        queue_answer_seconds,
        handle_seconds,
        hold_seconds
    FROM counted
)

SELECT * FROM final ORDER BY day, channel
