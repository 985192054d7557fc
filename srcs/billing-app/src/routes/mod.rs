//! billing-app's HTTP listener: operations endpoints and order status.

mod get_order;
mod health;

use actix_web::{http::Method, web};
use common::routes::Routes;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    Routes::operations(health::ready, database::scrape_with_pool)
        .api(Method::GET, "/api/billing/{order_id}", get_order::get_order)
        .register(cfg, |_, resource| resource);
}
