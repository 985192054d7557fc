//! One module per endpoint, and the table of every route.

mod create_movie;
mod delete_all_movies;
mod delete_movie;
mod get_movie;
mod health;
mod list_movies;
mod replace_movie;

use actix_web::{
    http::{
        header::{self, EntityTag},
        Method,
    },
    web, HttpRequest, HttpResponse,
};
use common::{conditional, routes::Routes};

use crate::error::InventoryError;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    Routes::operations(health::ready, database::scrape_with_pool)
        .api(Method::GET, "/api/movies", list_movies::list_movies)
        .api(Method::POST, "/api/movies", create_movie::create_movie)
        .api(
            Method::DELETE,
            "/api/movies",
            delete_all_movies::delete_all_movies,
        )
        .api(Method::GET, "/api/movies/{id}", get_movie::get_movie)
        .api(
            Method::PUT,
            "/api/movies/{id}",
            replace_movie::replace_movie,
        )
        .api(
            Method::DELETE,
            "/api/movies/{id}",
            delete_movie::delete_movie,
        )
        .register(cfg, |_, resource| resource);
}

/// A catalogue read: the JSON `body` tagged `etag`, which clients and shared caches may keep
/// and revalidate; 304 (no body) if the client's copy is current.
fn cacheable(
    req: &HttpRequest,
    etag: EntityTag,
    body: Vec<u8>,
) -> Result<HttpResponse, InventoryError> {
    let current = conditional::is_current(req, &etag);
    let mut response = if current {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header(header::ETag(etag))
        .insert_header((header::CACHE_CONTROL, conditional::REVALIDATE));
    if current {
        return Ok(response.finish());
    }
    Ok(response.content_type("application/json").body(body))
}
