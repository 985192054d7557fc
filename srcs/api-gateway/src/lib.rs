//! api-gateway: the platform's only public entry. Proxies the movie catalogue to inventory-app
//! and turns orders into confirmed, persistent messages for billing-app.

pub mod circuit_breaker;
pub mod configuration;
pub mod error;
pub mod metrics;
pub mod publisher;
pub mod routes;
pub mod startup;
pub mod upstream;
