//! One module per endpoint, and the table of every public route.

mod create_order;
mod docs;
mod health;
mod movies;
mod order_status;

use actix_web::{
    http::Method,
    middleware::{from_fn, Condition},
    web, Resource, Route,
};
use common::http::method_not_allowed;

/// Paths never rate-limited: probes and scrapers call them on a schedule.
const NOT_RATE_LIMITED: [&str; 3] = ["/health", "/ready", "/metrics"];

/// `METHOD "path" => handler`, as (path, method, route) rows.
macro_rules! routes {
    ($($method:ident $path:literal => $handler:path),* $(,)?) => {
        vec![$(($path, Method::$method, web::method(Method::$method).to($handler))),*]
    };
}

/// Every public route of the gateway. `configure` registers exactly these, and a test checks
/// that `openapi.yaml` documents exactly these.
fn table() -> Vec<(&'static str, Method, Route)> {
    routes![
        GET "/health" => common::health::liveness,
        GET "/ready" => health::ready,
        GET "/metrics" => health::metrics,
        GET "/openapi.yaml" => docs::openapi_yaml,
        GET "/openapi.json" => docs::openapi_json,
        GET "/api/movies" => movies::proxy_to_inventory,
        POST "/api/movies" => movies::proxy_write_to_inventory,
        DELETE "/api/movies" => movies::proxy_write_to_inventory,
        GET "/api/movies/{id}" => movies::proxy_to_inventory,
        PUT "/api/movies/{id}" => movies::proxy_write_to_inventory,
        DELETE "/api/movies/{id}" => movies::proxy_write_to_inventory,
        POST "/api/billing" => create_order::create_order,
        GET "/api/billing/{order_id}" => order_status::order_status,
    ]
}

/// The documented routes as (path, method), for the spec check.
pub fn documented_routes() -> Vec<(&'static str, Method)> {
    table()
        .into_iter()
        .map(|(path, method, _)| (path, method))
        .collect()
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    // One resource per path, so other methods on a known path get 405, not 404.
    let mut paths: Vec<(&str, Vec<Method>, Vec<Route>)> = Vec::new();
    for (path, method, route) in table() {
        match paths.iter_mut().find(|(p, _, _)| *p == path) {
            Some((_, methods, routes)) => {
                methods.push(method);
                routes.push(route);
            }
            None => paths.push((path, vec![method], vec![route])),
        }
    }
    // Paths are tried in order, and each templated one is a regex match (twice per request:
    // routing, then the metrics' route label); fixed paths first keep the busiest routes
    // (`/api/movies`, `/api/billing`) from paying for it.
    paths.sort_by_key(|(path, _, _)| path.contains('{'));
    for (path, methods, routes) in paths {
        let resource = routes
            .into_iter()
            .fold(web::resource(path), |resource, route| resource.route(route))
            .default_service(method_not_allowed(&methods));
        cfg.service(rate_limited(resource, path));
    }
    // Swagger UI: the documentation itself, not part of the API it documents.
    for (path, route) in [
        ("/docs", web::get().to(docs::docs_redirect)),
        ("/docs/{file:.*}", web::get().to(docs::swagger_ui)),
    ] {
        cfg.service(rate_limited(web::resource(path).route(route), path));
    }
}

/// The resource, limited per client unless it is an operations endpoint. The limit is attached
/// to the route the router matched, never decided from the path as the client spelled it. It
/// runs inside the app's request id, logging and metrics, so refusals show there too.
fn rate_limited(
    resource: Resource,
    path: &str,
) -> Resource<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    resource.wrap(Condition::new(
        !NOT_RATE_LIMITED.contains(&path),
        from_fn(crate::rate_limit::middleware),
    ))
}
