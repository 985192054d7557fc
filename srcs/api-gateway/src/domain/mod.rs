//! What the gateway itself parses out of a request: the order's body and its Idempotency-Key.

mod idempotency_key;
mod order_request;

pub use idempotency_key::{new_order_id, IdempotencyKey};
pub(crate) use order_request::parse_order;
