-- Contacts per agent (the original walkthrough's first visual): the contacts each agent was connected to,
-- over the whole table; every transfer segment is its own contact, as in Amazon Connect's reports.
WITH source AS (
    SELECT * FROM agent_counts
),

final AS (
    SELECT agent_username, sum(contacts_handled)::BIGINT AS contacts
    FROM source
    GROUP BY agent_username
)

SELECT * FROM final ORDER BY contacts DESC, agent_username
