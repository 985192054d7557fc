//! api-gateway with a real inventory-app (in-process, own database) and a real RabbitMQ
//! (own queue) behind it.

mod catalogue_cache;
mod docs;
mod helpers;
mod movies_proxy;
mod observability;
mod orders;
mod scaling;
mod security;
