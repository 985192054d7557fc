//! What every service of the movie platform must agree on, kept in one place so it cannot drift:
//! the order message and its queue topology, the catalogue's change events, the problem+json
//! error shape, request ids, configuration and connection helpers.

// A Problem (the 400 answer to a bad request) is large, but it is built once per refused
// request, on the error path only.
#![allow(clippy::result_large_err)]

pub mod amqp;
pub mod auth;
pub mod backoff;
pub mod catalogue_event;
pub mod conditional;
pub mod config;
pub mod connection_watch;
pub mod health;
pub mod http;
pub mod json_fields;
pub mod lifecycle;
pub mod metrics;
pub mod order;
pub mod problem;
pub mod request_id;
pub mod request_limits;
pub mod routes;
pub mod systemd;
pub mod telemetry;
