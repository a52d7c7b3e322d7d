-- Why contacts ended: Connect's DisconnectReason per day (reporting time zone), channel and outcome
-- (handled, abandoned, callback not connected, not queued), so "who hung up" reads against what happened.
WITH source AS (
    SELECT
        CAST(timezone($report_timezone, timezone('UTC', counted_at)) AS DATE) AS day,
        channel,
        outcome,
        disconnect_reason
    FROM contact_facts
),

final AS (
    SELECT day, channel, outcome, disconnect_reason, count(*) AS contacts
    FROM source
    GROUP BY day, channel, outcome, disconnect_reason
)

SELECT * FROM final ORDER BY day, channel, contacts DESC, disconnect_reason, outcome
