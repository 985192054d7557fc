//! One module per endpoint.

mod create_movie;
mod delete_all_movies;
mod delete_movie;
mod get_movie;
mod health;
mod list_movies;
mod replace_movie;

use actix_web::{http::Method, web};
use common::http::method_not_allowed;

pub fn configure(cfg: &mut web::ServiceConfig) {
    for (path, route) in [
        ("/health", web::get().to(common::health::liveness)),
        ("/ready", web::get().to(health::ready)),
        ("/metrics", web::get().to(common::metrics::scrape_with_pool)),
    ] {
        cfg.service(
            web::resource(path)
                .route(route)
                .default_service(method_not_allowed(&[Method::GET])),
        );
    }
    cfg.service(
        web::resource("/api/movies")
            .route(web::get().to(list_movies::list_movies))
            .route(web::post().to(create_movie::create_movie))
            .route(web::delete().to(delete_all_movies::delete_all_movies))
            .default_service(method_not_allowed(&[
                Method::GET,
                Method::POST,
                Method::DELETE,
            ])),
    )
    .service(
        web::resource("/api/movies/{id}")
            .route(web::get().to(get_movie::get_movie))
            .route(web::put().to(replace_movie::replace_movie))
            .route(web::delete().to(delete_movie::delete_movie))
            .default_service(method_not_allowed(&[
                Method::GET,
                Method::PUT,
                Method::DELETE,
            ])),
    );
}
