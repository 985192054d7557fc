//! api-gateway: the platform's only public entry. Proxies the movie catalogue to inventory-app
//! and turns orders into confirmed, persistent messages for billing-app.
//!
//! - `startup`: builds the application and runs it (the lifecycle every service shares).
//! - `routes`: the table of routes, one module per resource.
//! - `domain`: what the gateway parses out of a request (the order, its Idempotency-Key).
//! - `upstream` and `circuit_breaker`: the services behind the gateway, each with its breaker.
//! - `catalogue_cache` and `catalogue_events`: catalogue reads kept in memory, invalidated by
//!   inventory's change events and the gateway's own writes.
//! - `publisher`: orders onto the queue, with publisher confirms.
//! - `idempotency`: the keys recently seen, so a retry is not a second order.
//! - `rate_limit`: per-client limits; `error`: the one error type, mapped to problem+json.

// A Problem (the 400 answer to a bad request) is large, but it is built once per refused
// request, on the error path only.
#![allow(clippy::result_large_err)]

mod catalogue_cache;
mod catalogue_events;
mod circuit_breaker;
pub mod configuration;
pub mod domain;
mod error;
mod idempotency;
mod metrics;
mod publisher;
mod rate_limit;
pub mod routes;
pub mod startup;
mod upstream;
