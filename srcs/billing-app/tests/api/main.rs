//! billing-app against a real RabbitMQ and PostgreSQL: a queue and a database per test.

mod helpers;
mod billing;
mod observability;
mod resilience;
