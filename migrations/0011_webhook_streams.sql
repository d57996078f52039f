-- Webhooks are streamed: each webhook's first attempts come from its cursor, a batch at a time,
-- on one node at a time (the holder of the webhook's advisory lock), and a delivery row is
-- written when an event's first attempt ends, in the same statement that moves the cursor past
-- it. Retries go on from the delivery rows as before. What the columns mean now, and an index
-- for the hourly clean-up, which deletes deliveries (and their attempts) past
-- EVENT_RETENTION_DAYS:

create index webhook_deliveries_created_at_brin on webhook_deliveries using brin (created_at);

comment on column webhooks.event_cursor is 'The position in the workspace''s event log up to which every event of the webhook''s types has been sent once (and has its delivery row); its stream goes on from there.';
comment on column webhooks.updated_at is 'Last change to the row (URL, events, active, and the cursor after each batch sent).';
comment on table webhook_deliveries is 'One event sent to one webhook, written when its first attempt ends: delivered on a 2xx answer, otherwise pending until a retry gets one, or failed after 24 hours of retries.';
comment on column webhook_deliveries.created_at is 'When its first attempt ended.';
comment on column webhook_deliveries.next_attempt_at is 'When the worker may retry it (while pending); also its lease while a retry is in flight.';
