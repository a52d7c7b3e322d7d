-- The counts and totals every queue metric is made of, per interval, queue (by ARN) and channel; contacts with
-- no queue (IVR-only, monitoring) are the rows with a NULL queue_arn. The flags are defined in
-- contact_facts.sql, the interval in counted_contacts.sql, the rates in metric_macros.sql. Both
-- queue_interval_metrics and daily_summary sum these rows, so no count is written twice.
WITH source AS (
    SELECT * FROM counted_contacts
),

final AS (
    SELECT
        interval_start,
        interval_end,
        interval_is_partial,
        day,
        day_is_partial,
        queue_arn,
        coalesce(queue_name, '(no queue)') AS queue_name,
        channel,
        count(*) AS contacts,
        count(*) FILTER (WHERE is_queued) AS contacts_queued,
        -- Handled includes outbound contacts, which Connect reports under the agent's outbound queue.
        count(*) FILTER (WHERE is_handled) AS contacts_handled,
        count(*) FILTER (WHERE is_answered) AS contacts_answered,
        count(*) FILTER (WHERE is_abandoned) AS contacts_abandoned,
        count(*) FILTER (WHERE is_within_service_level) AS contacts_within_service_level,
        count(*) FILTER (WHERE is_handled AND is_put_on_hold) AS contacts_put_on_hold,
        count(*) FILTER (WHERE is_handled AND agent_hung_up_first) AS contacts_agent_hung_up_first,
        count(*) FILTER (WHERE is_transferred_in) AS transfers_in,
        count(*) FILTER (WHERE is_transferred_in_by_agent) AS transfers_in_by_agent,
        count(*) FILTER (WHERE is_transferred_in_from_queue) AS transfers_in_from_queue,
        count(*) FILTER (WHERE is_transferred_out) AS transfers_out,
        count(*) FILTER (WHERE is_transferred_out_by_agent) AS transfers_out_by_agent,
        count(*) FILTER (WHERE is_transferred_out_queue) AS transfers_out_queue,
        count(*) FILTER (WHERE is_transferred_out_external) AS transfers_out_external,
        count(*) FILTER (WHERE is_callback) AS callback_contacts,
        count(*) FILTER (WHERE is_callback_handled) AS callback_contacts_handled,
        count(*) FILTER (WHERE is_queued_for_callback) AS contacts_queued_for_callback,
        -- Totals behind the averages (metric_macros.sql), so any coarser grain re-aggregates exactly.
        coalesce(sum(queue_seconds) FILTER (WHERE is_answered), 0)::BIGINT AS queue_answer_seconds,
        coalesce(sum(queue_seconds) FILTER (WHERE is_queued), 0)::BIGINT AS queue_wait_seconds,
        -- Maximum queued time: "the longest time that a contact spent waiting in the queue", abandoned ones too.
        max(queue_seconds) FILTER (WHERE is_queued) AS max_queue_wait_seconds,
        coalesce(sum(handle_seconds) FILTER (WHERE is_handled), 0)::BIGINT AS handle_seconds,
        coalesce(sum(hold_seconds) FILTER (WHERE is_handled AND is_put_on_hold), 0)::BIGINT AS hold_seconds
    FROM source
    GROUP BY ALL
)

SELECT * FROM final
