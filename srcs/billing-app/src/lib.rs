//! billing-app: takes orders off the queue and bills each exactly once in its own database;
//! a small HTTP listener answers health, readiness, metrics and order status.
//!
//! - `startup`: builds the application and runs it (the lifecycle every service shares).
//! - `consumer`: the order consumer (reconnects, batches, acknowledges after the commit).
//! - `store`: the SQL, and the embedded migrations.
//! - `routes`: the table of routes, one module per endpoint; `error`: the one error type.
//! - `dlq`: the `billing-app dlq` commands (list, replay, purge the dead-letter queue);
//!   `dead_letter`: the note the consumer attaches to what it dead-letters, which they read.

pub mod configuration;
mod consumer;
mod dead_letter;
pub mod dlq;
mod error;
mod metrics;
mod routes;
pub mod startup;
pub mod store;
