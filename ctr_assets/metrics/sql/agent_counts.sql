-- The counts and totals every agent metric is made of, per day, agent, queue and channel: the contacts each
-- agent handled, i.e. was connected to (an agent named on a contact it never reached is not credited). The
-- original two visuals and agent_performance all sum these rows.
WITH source AS (
    SELECT * FROM counted_contacts
    WHERE is_handled AND agent_username IS NOT NULL
),

final AS (
    SELECT
        day,
        day_is_partial,
        agent_username,
        queue_arn,
        coalesce(queue_name, '(no queue)') AS queue_name,
        channel,
        count(*) AS contacts_handled,
        -- Contacts handled outbound: "initiated by an agent using the CCP".
        count(*) FILTER (WHERE initiationmethod = 'OUTBOUND') AS contacts_handled_outbound,
        count(*) FILTER (WHERE is_callback) AS callback_contacts_handled,
        count(*) FILTER (WHERE is_put_on_hold) AS contacts_put_on_hold,
        count(*) FILTER (WHERE agent_hung_up_first) AS contacts_agent_hung_up_first,
        count(*) FILTER (WHERE is_transferred_out_by_agent) AS transfers_out,
        sum(handle_seconds)::BIGINT AS handle_seconds,
        sum(interaction_seconds)::BIGINT AS interaction_seconds,
        coalesce(sum(hold_seconds) FILTER (WHERE is_put_on_hold), 0)::BIGINT AS hold_seconds,
        sum(after_contact_work_seconds)::BIGINT AS after_contact_work_seconds
    FROM source
    GROUP BY ALL
)

SELECT * FROM final
