-- A refused event (nack) waits until `retry_at` for its next try, out of the way of the events
-- after it: one subscriber's full queue must not hold up the feed for the others. NULL: due now.
ALTER TABLE catalogue_outbox ADD COLUMN retry_at TIMESTAMPTZ;
