-- Billed orders: one row per order id, however often its message is delivered.
CREATE TABLE orders (
    order_id        UUID          PRIMARY KEY,
    user_id         TEXT          NOT NULL CHECK (char_length(user_id) BETWEEN 1 AND 64),
    number_of_items INTEGER       NOT NULL CHECK (number_of_items BETWEEN 1 AND 10000),
    total_amount    NUMERIC(12,2) NOT NULL CHECK (total_amount > 0 AND total_amount <= 1000000),
    -- When the gateway accepted the order, and when billing stored it.
    received_at     TIMESTAMPTZ   NOT NULL,
    processed_at    TIMESTAMPTZ   NOT NULL DEFAULT now(),
    -- The HTTP request that created the order, to follow it across the services' logs.
    request_id      TEXT
);
