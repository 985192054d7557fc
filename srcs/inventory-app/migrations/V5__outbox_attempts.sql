-- An event the broker refuses (a nack: for example a subscriber's queue full with
-- `x-overflow: reject-publish`) is tried again a few times, then parked: it stays here with its
-- attempts and why, out of the relay's way, so that the events after it are not held up. An
-- operator re-arms parked events by setting attempts back to 0 (README, Operations).
ALTER TABLE catalogue_outbox
    ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN last_error TEXT;
