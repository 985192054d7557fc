-- What each order's request said (see PayloadFingerprint in srcs/common/src/order.rs); NULL for
-- orders billed before fingerprints existed.
ALTER TABLE orders ADD COLUMN payload_fingerprint TEXT;

-- Requests that reused an order's Idempotency-Key with a different payload: never billed, kept
-- so that the order's status can show them.
CREATE TABLE order_conflicts (
    order_id            UUID        NOT NULL REFERENCES orders (order_id),
    payload_fingerprint TEXT        NOT NULL,
    received_at         TIMESTAMPTZ NOT NULL,
    request_id          TEXT,
    recorded_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, payload_fingerprint)
);
