-- Contacts per agent and queue (the original walkthrough's "agent by queue" visual).
-- Contacts handled by an agent out of a queue, counted on the deduplicated CTR; outbound contacts have
-- no queue and are shown under queue "(none)".
WITH source AS (
    SELECT
        agent.username AS agent_username,
        coalesce(queue.name, '(none)') AS queue_name,
        queue.arn AS queue_arn
    FROM ctr
    WHERE agent.username IS NOT NULL
),

final AS (
    SELECT agent_username, queue_name, queue_arn, count(*) AS contacts
    FROM source
    GROUP BY agent_username, queue_name, queue_arn
)

SELECT * FROM final ORDER BY agent_username, contacts DESC, queue_name
