//! inventory-app: the movie catalogue, CRUD over HTTP on PostgreSQL.

// A Problem (the 400 answer to a bad request) is large, but it is built once per refused
// request, on the error path only.
#![allow(clippy::result_large_err)]

pub mod configuration;
pub mod domain;
pub mod error;
pub mod routes;
pub mod startup;
pub mod store;
