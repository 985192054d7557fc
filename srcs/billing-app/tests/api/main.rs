//! billing-app against a real RabbitMQ and PostgreSQL: a queue and a database per test.

mod billing;
mod dlq;
mod helpers;
mod observability;
mod resilience;
