//! inventory-app against a real PostgreSQL: one fresh database per test.

mod conditional;
mod events;
mod helpers;
mod movies;
mod observability;
mod pagination;
mod resilience;
