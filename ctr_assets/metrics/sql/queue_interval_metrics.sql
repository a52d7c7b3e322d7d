-- Queue metrics per queue, hour and channel, as Amazon Connect's historical queue report defines them.
-- A contact counts in the hour it entered the queue (or was initiated, if never queued), in the reporting
-- time zone (CTR_REPORT_TIMEZONE, UTC by default); service level is at CTR_SERVICE_LEVEL_SECONDS.
-- The classification (queued, handled, abandoned, ...) is defined in contact_facts.sql.
WITH source AS (
    SELECT
        *,
        date_trunc('hour', timezone($report_timezone, timezone('UTC', counted_at))) AS interval_start
    FROM contact_facts
    WHERE queue_name IS NOT NULL
),

counted AS (
    SELECT
        interval_start,
        queue_name,
        channel,
        count(*) FILTER (WHERE is_queued) AS contacts_queued,
        -- Contacts handled includes outbound contacts, which Connect reports under the agent's outbound queue.
        count(*) FILTER (WHERE is_handled) AS contacts_handled,
        -- Answered from the queue: queued, then connected to an agent (the base of the speed of answer).
        count(*) FILTER (WHERE is_queued AND is_handled) AS contacts_answered,
        count(*) FILTER (WHERE is_abandoned) AS contacts_abandoned,
        -- Contacts removed from the queue (answered, abandoned, or expired as a callback) within X seconds
        -- of being queued, X included.
        count(*) FILTER (WHERE is_queued AND queue_seconds <= $service_level_seconds) AS contacts_within_service_level,
        -- Average queue answer time (average speed of answer): Queue.Duration of the contacts answered from
        -- the queue; outbound contacts, never queued, would pull it down with their zero duration.
        avg(queue_seconds) FILTER (WHERE is_queued AND is_handled) AS avg_queue_answer_seconds,
        -- Average and maximum queued time: every queued contact, answered or not.
        avg(queue_seconds) FILTER (WHERE is_queued) AS avg_queue_wait_seconds,
        max(queue_seconds) FILTER (WHERE is_queued) AS max_queue_wait_seconds,
        -- Average handle time: interaction + hold + after-contact work, over the contacts handled.
        avg(handle_seconds) FILTER (WHERE is_handled) AS avg_handle_seconds,
        count(*) FILTER (WHERE is_handled AND is_put_on_hold) AS contacts_put_on_hold,
        -- Average customer hold time: over the contacts that were put on hold only.
        avg(hold_seconds) FILTER (WHERE is_handled AND is_put_on_hold) AS avg_hold_seconds,
        count(*) FILTER (WHERE is_transferred_in) AS transfers_in,
        count(*) FILTER (WHERE is_transferred_out) AS transfers_out,
        count(*) FILTER (WHERE is_callback) AS callbacks,
        -- Totals behind the averages, so that a coarser grain (a day, a queue) re-aggregates exactly.
        coalesce(sum(queue_seconds) FILTER (WHERE is_queued AND is_handled), 0)::BIGINT AS queue_answer_seconds,
        coalesce(sum(handle_seconds) FILTER (WHERE is_handled), 0)::BIGINT AS handle_seconds,
        coalesce(sum(hold_seconds) FILTER (WHERE is_handled AND is_put_on_hold), 0)::BIGINT AS hold_seconds
    FROM source
    GROUP BY interval_start, queue_name, channel
),

final AS (
    SELECT
        interval_start,
        queue_name,
        channel,
        contacts_queued,
        contacts_handled,
        contacts_answered,
        contacts_abandoned,
        -- Abandonment rate: contacts abandoned / contacts queued.
        contacts_abandoned / nullif(contacts_queued, 0) AS abandonment_rate,
        contacts_within_service_level,
        -- Service level X: contacts removed from the queue within X seconds / contacts queued.
        contacts_within_service_level / nullif(contacts_queued, 0) AS service_level,
        $service_level_seconds AS service_level_seconds,
        avg_queue_answer_seconds,
        avg_queue_wait_seconds,
        max_queue_wait_seconds,
        avg_handle_seconds,
        contacts_put_on_hold,
        avg_hold_seconds,
        transfers_in,
        transfers_out,
        callbacks,
        queue_answer_seconds,
        handle_seconds,
        hold_seconds
    FROM counted
)

SELECT * FROM final ORDER BY interval_start, queue_name, channel
