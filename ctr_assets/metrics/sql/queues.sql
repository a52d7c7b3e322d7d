-- Every queue by its ARN, with the name to show. Amazon Connect identifies a queue by its ARN and a rename
-- keeps the ARN, so contacts are grouped by ARN (two queues sharing a name stay apart, a renamed queue stays
-- one) and shown with the name on the queue's most recent contact (by initiation, then contact id), so a
-- rename is followed. An agent's personal queue (`…/queue/agent/<agent id>`, where transfers to that agent
-- wait) has no name: it is shown as "Agent queue: <username>", the username of that agent's most recent
-- contact, or its agent id when the agent has none in the table. A view, refreshed with `ctr`.
WITH queued AS (
    SELECT
        queue.arn AS queue_arn,
        queue.name AS queue_name,
        initiationtimestamp AS initiated_at,
        contactid
    FROM ctr
    WHERE queue.arn IS NOT NULL
),

latest_names AS (
    SELECT queue_arn, arg_max(queue_name, (initiated_at, contactid)) AS current_name
    FROM queued
    WHERE queue_name IS NOT NULL
    GROUP BY queue_arn
),

agents AS (
    SELECT
        regexp_extract(agent.arn, '/agent/([^/]+)$', 1) AS agent_id,
        arg_max(agent.username, (initiationtimestamp, contactid)) AS username
    FROM ctr
    WHERE agent.arn IS NOT NULL AND agent.username IS NOT NULL
    GROUP BY agent_id
),

arns AS (
    SELECT DISTINCT
        queue_arn,
        nullif(regexp_extract(queue_arn, '/queue/agent/([^/]+)$', 1), '') AS agent_id
    FROM queued
),

final AS (
    SELECT
        arns.queue_arn,
        coalesce(
            latest_names.current_name,
            'Agent queue: ' || coalesce(agents.username, arns.agent_id),
            'Queue ' || regexp_extract(arns.queue_arn, '([^/]*)$', 1)
        ) AS queue_name
    FROM arns
    LEFT JOIN latest_names USING (queue_arn)
    LEFT JOIN agents USING (agent_id)
)

SELECT * FROM final
