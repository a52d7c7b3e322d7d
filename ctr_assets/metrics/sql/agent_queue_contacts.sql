-- Contacts per agent and queue (the original walkthrough's "agent by queue" visual), per day (reporting time
-- zone): the contacts each agent was connected to, per queue ARN with the queue's current name; outbound
-- contacts count under the agent's outbound queue, transfers to an agent under that agent's queue.
WITH source AS (
    SELECT * FROM agent_counts
),

final AS (
    SELECT day, agent_username, queue_arn, queue_name, sum(contacts_handled)::BIGINT AS contacts
    FROM source
    GROUP BY day, agent_username, queue_arn, queue_name
)

SELECT * FROM final ORDER BY day, agent_username, contacts DESC, queue_name, queue_arn
