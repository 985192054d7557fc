//! api-gateway: the platform's only public entry. Proxies the movie catalogue to inventory-app
//! and turns orders into confirmed, persistent messages for billing-app.

// A Problem (the 400 answer to a bad request) is large, but it is built once per refused
// request, on the error path only.
#![allow(clippy::result_large_err)]

pub mod circuit_breaker;
pub mod configuration;
pub mod error;
pub mod idempotency;
pub mod metrics;
pub mod publisher;
pub mod rate_limit;
pub mod routes;
pub mod startup;
pub mod upstream;
