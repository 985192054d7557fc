//! One module per resource, and the table of every route.

mod create_order;
mod docs;
mod health;
mod movies;
mod order_status;

use actix_web::{
    http::Method,
    middleware::{from_fn, Condition},
    web,
};
use common::routes::{Audience, Routes};

/// Every route of the gateway. `configure` registers exactly these, and a test checks that
/// `openapi.yaml` documents exactly the documented ones.
fn routes() -> Routes {
    Routes::operations(health::ready, common::metrics::scrape)
        .api(Method::GET, "/openapi.yaml", docs::openapi_yaml)
        .api(Method::GET, "/openapi.json", docs::openapi_json)
        .api(Method::GET, "/api/movies", movies::read_catalogue)
        .api(Method::POST, "/api/movies", movies::write_catalogue)
        .api(Method::DELETE, "/api/movies", movies::write_catalogue)
        .api(Method::GET, "/api/movies/{id}", movies::read_catalogue)
        .api(Method::PUT, "/api/movies/{id}", movies::write_catalogue)
        .api(Method::DELETE, "/api/movies/{id}", movies::write_catalogue)
        .api(Method::POST, "/api/billing", create_order::create_order)
        .api(
            Method::GET,
            "/api/billing/{order_id}",
            order_status::order_status,
        )
        .documentation("/docs", docs::docs_redirect)
        .documentation("/docs/{file:.*}", docs::swagger_ui)
}

/// The documented routes as (path, method), for the spec check.
pub fn documented_routes() -> Vec<(&'static str, Method)> {
    routes().documented()
}

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    // Every client is limited, on the route the router matched (so no spelling of a path walks
    // around it); probes and scrapers are not. The limit runs inside the app's request id,
    // logging and metrics, so refusals show there too.
    routes().register(cfg, |audience, resource| {
        resource.wrap(Condition::new(
            audience != Audience::Operations,
            from_fn(crate::rate_limit::middleware),
        ))
    });
}
