-- Contacts per agent (the original walkthrough's first visual).
-- A contact counts for the agent whose username is on its deduplicated CTR, i.e. the agent who was
-- connected to it; every transfer segment is its own contact, as in Amazon Connect's reports.
WITH source AS (
    SELECT agent.username AS agent_username
    FROM ctr
    WHERE agent.username IS NOT NULL
),

final AS (
    SELECT agent_username, count(*) AS contacts
    FROM source
    GROUP BY agent_username
)

SELECT * FROM final ORDER BY contacts DESC, agent_username
