-- One row per contact (the deduplicated ctr table) with its Amazon Connect classification, so that every
-- metric reads "queued", "handled", "abandoned", ... from one definition. A view, refreshed with `ctr`.
-- Each contact segment is a contact, as in Connect's reports: a transfer is two contacts, one per queue.
WITH source AS (
    SELECT * FROM ctr
),

renamed AS (
    SELECT
        contactid,
        channel,
        initiationmethod,
        coalesce(disconnectreason, 'UNKNOWN') AS disconnect_reason,
        initiationtimestamp AS initiated_at,
        queue.name AS queue_name,
        queue.enqueuetimestamp AS enqueued_at,
        queue.duration AS queue_seconds,
        agent.username AS agent_username,
        agent.connectedtoagenttimestamp AS connected_to_agent_at,
        coalesce(agent.agentinteractionduration, 0) AS interaction_seconds,
        coalesce(agent.customerholdduration, 0) AS hold_seconds,
        coalesce(agent.numberofholds, 0) AS holds,
        coalesce(agent.aftercontactworkduration, 0) AS after_contact_work_seconds,
        nextcontactid IS NOT NULL OR transfercompletedtimestamp IS NOT NULL AS left_for_another_endpoint
    FROM source
),

classified AS (
    SELECT
        *,
        -- Contacts queued: placed in a queue. Outbound contacts name the agent's outbound queue but have no
        -- enqueue timestamp: they were never queued.
        enqueued_at IS NOT NULL AS is_queued,
        -- Contacts handled: connected to an agent, incoming or outbound. An Agent object alone is not enough
        -- (a contact offered to an agent who missed it carries one).
        connected_to_agent_at IS NOT NULL AS is_handled,
        -- Callback contacts: initiated from a queued callback.
        coalesce(initiationmethod = 'CALLBACK', false) AS is_callback,
        -- Contacts transferred in: put in this queue by an agent's transfer (the second segment of a transfer).
        coalesce(initiationmethod = 'TRANSFER', false) AS is_transferred_in,
        -- Contacts put on hold: by an agent, one or more times.
        holds > 0 AS is_put_on_hold,
        -- Contacts agent hung up first: the agent disconnected before the customer.
        disconnect_reason = 'AGENT_DISCONNECT' AS agent_hung_up_first,
        -- Handle time: agent interaction + customer hold + after-contact work.
        interaction_seconds + hold_seconds + after_contact_work_seconds AS handle_seconds,
        -- The moment a contact counts in an interval: when it entered its queue (Connect's "Contacts queued
        -- (enqueue timestamp)"), so an interval's service level and abandonment describe the demand that
        -- arrived in it; a contact never queued (IVR-only, outbound) counts when it was initiated.
        coalesce(enqueued_at, initiated_at) AS counted_at
    FROM renamed
),

with_outcomes AS (
    SELECT
        * EXCLUDE (left_for_another_endpoint),
        -- Contacts abandoned: queued, never connected to an agent, and not a callback (an expired callback
        -- is not abandoned; an IVR-only contact was never queued, so it is not abandoned either).
        is_queued AND NOT is_handled AND NOT is_callback AS is_abandoned,
        -- Contacts transferred out: answered by an agent who then transferred the contact (to a queue, an
        -- agent or an external number), i.e. a next segment exists or an external transfer completed.
        is_handled AND left_for_another_endpoint AS is_transferred_out
    FROM classified
),

final AS (
    SELECT
        *,
        CASE
            WHEN is_handled THEN 'handled'
            WHEN is_abandoned THEN 'abandoned'
            WHEN is_queued THEN 'callback not connected'
            ELSE 'not queued'
        END AS outcome
    FROM with_outcomes
)

SELECT * FROM final
