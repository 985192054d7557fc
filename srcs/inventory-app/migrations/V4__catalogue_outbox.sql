-- The transactional outbox: every change to the catalogue writes its change event here in the
-- same transaction, and the relay (src/relay.rs) publishes the rows with publisher confirms and
-- deletes them once confirmed. A crash between the commit and the publish loses nothing: the
-- row waits for the next relay pass. `id` orders the events as they were committed.
CREATE TABLE catalogue_outbox (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    UUID        NOT NULL UNIQUE,
    routing_key TEXT        NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    -- The event's JSON body, byte for byte as it is published.
    body        TEXT        NOT NULL
);
