//! billing-app's HTTP listener: operations endpoints and order status.

mod get_order;
mod health;

use actix_web::{http::Method, web};
use common::http::method_not_allowed;

pub fn configure(cfg: &mut web::ServiceConfig) {
    for (path, route) in [
        ("/health", web::get().to(common::health::liveness)),
        ("/ready", web::get().to(health::ready)),
        ("/metrics", web::get().to(common::metrics::scrape_with_pool)),
        (
            "/api/billing/{order_id}",
            web::get().to(get_order::get_order),
        ),
    ] {
        cfg.service(
            web::resource(path)
                .route(route)
                .default_service(method_not_allowed(&[Method::GET])),
        );
    }
}
