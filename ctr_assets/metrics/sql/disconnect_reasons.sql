-- Why contacts ended: Connect's DisconnectReason ("(none)" when Connect left it null, as it does for many
-- contacts ended by flows or APIs) per day (reporting time zone), queue, channel and outcome (handled,
-- abandoned, callback requested, moved to another queue, ... see contact_facts.sql), so "who hung up" reads
-- against what happened.
WITH source AS (
    SELECT * FROM counted_contacts
),

final AS (
    SELECT
        day,
        queue_arn,
        coalesce(queue_name, '(no queue)') AS queue_name,
        channel,
        outcome,
        disconnect_reason,
        count(*) AS contacts
    FROM source
    GROUP BY ALL
)

SELECT * FROM final ORDER BY day, queue_name, queue_arn, channel, contacts DESC, disconnect_reason, outcome
