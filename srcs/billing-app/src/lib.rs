//! billing-app: takes orders off the queue and bills each exactly once in its own database.

pub mod configuration;
pub mod consumer;
pub mod startup;
pub mod store;
