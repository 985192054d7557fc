//! inventory-app: the movie catalogue, CRUD over HTTP on PostgreSQL.
//!
//! - `startup`: builds the application and runs it (the lifecycle every service shares).
//! - `routes`: the table of routes, one module per endpoint.
//! - `domain`: the movie's parsed fields and the list query, valid by construction.
//! - `store`: the SQL, and the embedded migrations; every write leaves its change event in the
//!   outbox, in the same transaction.
//! - `relay`: publishes the outbox's events to the broker, with confirms.
//! - `error`: the one error type, mapped to problem+json.

// A Problem (the 400 answer to a bad request) is large, but it is built once per refused
// request, on the error path only.
#![allow(clippy::result_large_err)]

pub mod configuration;
mod domain;
mod error;
mod relay;
mod routes;
pub mod startup;
pub mod store;
