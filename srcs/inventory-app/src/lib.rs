//! inventory-app: the movie catalogue, CRUD over HTTP on PostgreSQL.

pub mod configuration;
pub mod domain;
pub mod error;
pub mod routes;
pub mod startup;
pub mod store;
