-- One row per contact (the deduplicated ctr table) with its Amazon Connect classification, so that every
-- metric reads "queued", "handled", "abandoned", ... from one definition. A view, refreshed with `ctr`.
-- Each contact segment is a contact, as in Connect's reports: a transfer, a move to another queue or a
-- callback makes a new segment, linked to the one before by NextContactId / PreviousContactId, and each
-- segment counts in its own queue. Quotes are from the Amazon Connect Administrator Guide ("Historical
-- metrics definitions", "Contact records data model").
WITH source AS (
    SELECT * FROM ctr
),

next_segments AS (
    -- How a contact's next segment began tells what ended this one: TRANSFER (an agent's transfer),
    -- QUEUE_TRANSFER (a flow moved it to another queue), CALLBACK (the customer asked to be called back),
    -- DISCONNECT (a disconnect flow, e.g. a survey). NULL until the next segment's record has arrived.
    SELECT contactid AS next_contactid, initiationmethod AS next_initiation_method
    FROM ctr
),

renamed AS (
    SELECT
        source.contactid,
        source.channel,
        source.initiationmethod,
        -- Connect leaves DisconnectReason null for "many contacts, such as contacts ended by flows or APIs".
        coalesce(source.disconnectreason, '(none)') AS disconnect_reason,
        source.initiationtimestamp AS initiated_at,
        coalesce(source.disconnecttimestamp, source.initiationtimestamp) AS disconnected_at,
        source.queue.arn AS queue_arn,
        queues.queue_name,
        source.queue.enqueuetimestamp AS enqueued_at,
        source.queue.duration AS queue_seconds,
        source.agent.username AS agent_username,
        source.agent.connectedtoagenttimestamp AS connected_to_agent_at,
        coalesce(source.agent.agentinteractionduration, 0) AS interaction_seconds,
        coalesce(source.agent.customerholdduration, 0) AS hold_seconds,
        coalesce(source.agent.numberofholds, 0) AS holds,
        coalesce(source.agent.aftercontactworkduration, 0) AS after_contact_work_seconds,
        source.nextcontactid IS NOT NULL AS has_next_segment,
        next_segments.next_initiation_method,
        source.transfercompletedtimestamp IS NOT NULL AS is_transfer_completed
    FROM source
    LEFT JOIN queues ON queues.queue_arn = source.queue.arn
    LEFT JOIN next_segments ON next_segments.next_contactid = source.nextcontactid
),

classified AS (
    SELECT
        *,
        -- Contacts queued: "Count of contacts placed in the queue" (Queue.EnqueueTimestamp set). Outbound
        -- contacts name the agent's outbound queue but have no enqueue timestamp: they were never queued.
        enqueued_at IS NOT NULL AS is_queued,
        -- Contacts handled: "Count of contacts that were connected to an agent", incoming or outbound
        -- (Agent.ConnectedToAgentTimestamp set). An Agent object alone is not enough: a contact offered to an
        -- agent who missed it names that agent. A MONITOR segment is a supervisor listening in on a contact
        -- that already counts: it is not handled again (our rule; Connect's text does not say).
        connected_to_agent_at IS NOT NULL AND initiationmethod IS DISTINCT FROM 'MONITOR' AS is_handled,
        -- Callback contacts: "initiated from a queued callback".
        initiationmethod IS NOT DISTINCT FROM 'CALLBACK' AS is_callback,
        -- Contacts transferred in by agent: put in this queue by an agent's transfer ("to the queue by an
        -- agent using the CCP"; to another agent, it waits in that agent's queue).
        initiationmethod IS NOT DISTINCT FROM 'TRANSFER' AS is_transferred_in_by_agent,
        -- Contacts transferred in from queue: "transferred to the queue from another in a Transfer to queue
        -- contact flow".
        initiationmethod IS NOT DISTINCT FROM 'QUEUE_TRANSFER' AS is_transferred_in_from_queue,
        -- Contacts put on hold: "put on hold by an agent one or more times".
        holds > 0 AS is_put_on_hold,
        -- Contacts agent hung up first: "the agent disconnected before the customer".
        disconnect_reason = 'AGENT_DISCONNECT' AS agent_hung_up_first,
        -- Handle time: agent interaction + customer hold + after-contact work ("talk time, hold time, and
        -- After Contact Work (ACW) time").
        interaction_seconds + hold_seconds + after_contact_work_seconds AS handle_seconds
    FROM renamed
),

with_outcomes AS (
    SELECT
        * EXCLUDE (next_initiation_method, is_transfer_completed),
        -- Answered from the queue: queued, then connected to an agent (the base of the speed of answer).
        is_queued AND is_handled AS is_answered,
        -- Contacts abandoned: "disconnected by the customer while in the queue... Contacts queued for callback
        -- are not counted as abandoned": queued, never connected to an agent, not a callback contact itself,
        -- and not continued by a next segment (a callback request or a move to another queue ended it). Not
        -- `agent IS NULL`, which also counts contacts that never queued (IVR-only).
        is_queued AND NOT is_handled AND NOT is_callback AND NOT has_next_segment AS is_abandoned,
        -- Queued for callback: left the queue because the customer asked to be called back (the CALLBACK
        -- contact is its next segment).
        is_queued AND NOT is_handled AND next_initiation_method IS NOT DISTINCT FROM 'CALLBACK'
            AS is_queued_for_callback,
        -- Contacts transferred out queue: "transferred from the queue to another queue in a Transfer to queue
        -- contact flow" (its next segment is a QUEUE_TRANSFER).
        is_queued AND NOT is_handled AND next_initiation_method IS NOT DISTINCT FROM 'QUEUE_TRANSFER'
            AS is_transferred_out_queue,
        -- Contacts transferred out by agent: "transferred from the queue after being answered by an agent",
        -- to a queue or an agent (the next segment is a TRANSFER) or out of Connect (TransferCompletedTimestamp,
        -- set "if this contact was transferred out of Amazon Connect").
        is_handled AND (next_initiation_method IS NOT DISTINCT FROM 'TRANSFER' OR is_transfer_completed)
            AS is_transferred_out_by_agent,
        -- Contacts transferred out external: an agent's transfer "to an external source, such as a phone number".
        is_handled AND is_transfer_completed AS is_transferred_out_external,
        -- Callback contacts handled: "initiated from a queued callback and handled by an agent".
        is_callback AND is_handled AS is_callback_handled
    FROM classified
),

final AS (
    SELECT
        *,
        -- Contacts transferred in / out: by an agent and from one queue to another, both.
        is_transferred_in_by_agent OR is_transferred_in_from_queue AS is_transferred_in,
        is_transferred_out_by_agent OR is_transferred_out_queue AS is_transferred_out,
        -- What happened to the contact, for the disconnect reasons.
        CASE
            WHEN is_handled THEN 'handled'
            WHEN is_abandoned THEN 'abandoned'
            WHEN is_queued_for_callback THEN 'callback requested'
            WHEN is_transferred_out_queue THEN 'moved to another queue'
            WHEN is_queued AND is_callback THEN 'callback not connected'
            WHEN is_queued THEN 'left the queue for a next segment'
            ELSE 'not queued'
        END AS outcome
    FROM with_outcomes
)

SELECT * FROM final
