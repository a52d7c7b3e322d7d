-- Agent performance per day (reporting time zone) and agent: the contacts each agent handled (was connected
-- to), with Amazon Connect's agent metrics. Handle time = interaction + hold + after-contact work; average
-- hold counts only the contacts put on hold; transfers out are the agent's own. Counts: agent_counts.sql;
-- averages: metric_macros.sql.
WITH source AS (
    SELECT * FROM agent_counts
),

counted AS (
    SELECT
        day,
        day_is_partial AS is_partial,
        agent_username,
        sum(COLUMNS(* EXCLUDE (day, day_is_partial, agent_username, queue_arn, queue_name, channel)))::BIGINT
    FROM source
    GROUP BY day, day_is_partial, agent_username
),

final AS (
    SELECT
        counted.*,
        avg_handle_seconds(counted) AS avg_handle_seconds,
        avg_interaction_seconds(counted) AS avg_interaction_seconds,
        avg_hold_seconds(counted) AS avg_hold_seconds,
        avg_after_contact_work_seconds(counted) AS avg_after_contact_work_seconds
    FROM counted
)

SELECT * FROM final ORDER BY day, contacts_handled DESC, agent_username
