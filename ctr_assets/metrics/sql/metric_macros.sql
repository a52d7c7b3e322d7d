-- Rates and averages, each defined once and applied to a row of summed counts (`m`), at whatever grain the
-- counts were summed to: a queue's interval, a day, an agent's day. Taking a ratio after summing is what
-- lets a coarser grain (a day, the whole period, a filter on the dashboard) re-aggregate exactly.
-- Abandonment rate: contacts abandoned / contacts queued.
CREATE OR REPLACE MACRO abandonment_rate(m) AS m.contacts_abandoned / nullif(m.contacts_queued, 0);
-- Service level X: contacts removed from the queue within X seconds / contacts queued.
CREATE OR REPLACE MACRO service_level(m) AS m.contacts_within_service_level / nullif(m.contacts_queued, 0);
-- Average queue answer time (speed of answer): Queue.Duration of the contacts answered from the queue.
CREATE OR REPLACE MACRO avg_queue_answer_seconds(m) AS m.queue_answer_seconds / nullif(m.contacts_answered, 0);
-- Average queued time: every queued contact, answered or not.
CREATE OR REPLACE MACRO avg_queue_wait_seconds(m) AS m.queue_wait_seconds / nullif(m.contacts_queued, 0);
-- Average handle time: interaction + hold + after-contact work, over the contacts handled.
CREATE OR REPLACE MACRO avg_handle_seconds(m) AS m.handle_seconds / nullif(m.contacts_handled, 0);
-- Average agent interaction time, over the contacts handled.
CREATE OR REPLACE MACRO avg_interaction_seconds(m) AS m.interaction_seconds / nullif(m.contacts_handled, 0);
-- Average customer hold time: over the contacts put on hold only.
CREATE OR REPLACE MACRO avg_hold_seconds(m) AS m.hold_seconds / nullif(m.contacts_put_on_hold, 0);
-- Average after-contact work time, over the contacts handled.
CREATE OR REPLACE MACRO avg_after_contact_work_seconds(m) AS m.after_contact_work_seconds / nullif(m.contacts_handled, 0);
-- The queue report's rates and averages as columns after a table of queue counts (interval_counts' columns,
-- per interval or summed to a day), so the queue metrics and the daily summary add them one way.
CREATE OR REPLACE MACRO with_queue_rates(counts) AS TABLE
    SELECT
        counted.*,
        abandonment_rate(counted) AS abandonment_rate,
        service_level(counted) AS service_level,
        (SELECT service_level_seconds FROM metric_settings) AS service_level_seconds,
        avg_queue_answer_seconds(counted) AS avg_queue_answer_seconds,
        avg_queue_wait_seconds(counted) AS avg_queue_wait_seconds,
        avg_handle_seconds(counted) AS avg_handle_seconds,
        avg_hold_seconds(counted) AS avg_hold_seconds
    FROM query_table(counts) AS counted;
