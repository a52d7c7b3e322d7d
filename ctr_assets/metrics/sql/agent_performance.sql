-- Agent performance over the whole table: the contacts each agent handled (was connected to), with Amazon
-- Connect's agent metrics. Handle time = interaction + hold + after-contact work; average hold counts only
-- the contacts the agent put on hold. Definitions of the flags are in contact_facts.sql.
WITH source AS (
    SELECT *
    FROM contact_facts
    WHERE is_handled AND agent_username IS NOT NULL
),

final AS (
    SELECT
        agent_username,
        count(*) AS contacts_handled,
        count(*) FILTER (WHERE initiationmethod = 'OUTBOUND') AS contacts_handled_outbound,
        avg(handle_seconds) AS avg_handle_seconds,
        avg(interaction_seconds) AS avg_interaction_seconds,
        count(*) FILTER (WHERE is_put_on_hold) AS contacts_put_on_hold,
        avg(hold_seconds) FILTER (WHERE is_put_on_hold) AS avg_hold_seconds,
        avg(after_contact_work_seconds) AS avg_after_contact_work_seconds,
        count(*) FILTER (WHERE agent_hung_up_first) AS contacts_agent_hung_up_first,
        count(*) FILTER (WHERE is_transferred_out) AS transfers_out,
        sum(handle_seconds)::BIGINT AS handle_seconds
    FROM source
    GROUP BY agent_username
)

SELECT * FROM final ORDER BY contacts_handled DESC, agent_username
