//! billing-app: takes orders off the queue and bills each exactly once in its own database;
//! a small HTTP listener answers health, readiness, metrics and order status.

pub mod configuration;
pub mod consumer;
pub mod error;
pub mod metrics;
pub mod routes;
pub mod startup;
pub mod store;
