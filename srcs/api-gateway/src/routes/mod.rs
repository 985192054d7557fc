//! One module per endpoint.

mod create_order;
mod health;
mod movies;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health::health))
        .service(
            web::resource("/api/movies")
                .route(web::get().to(movies::proxy_to_inventory))
                .route(web::post().to(movies::proxy_to_inventory))
                .route(web::delete().to(movies::proxy_to_inventory)),
        )
        .service(
            web::resource("/api/movies/{id}")
                .route(web::get().to(movies::proxy_to_inventory))
                .route(web::put().to(movies::proxy_to_inventory))
                .route(web::delete().to(movies::proxy_to_inventory)),
        )
        .service(web::resource("/api/billing").route(web::post().to(create_order::create_order)));
}
