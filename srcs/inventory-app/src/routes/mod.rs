//! One module per endpoint, and the table of every route.

mod create_movie;
mod delete_all_movies;
mod delete_movie;
mod get_movie;
mod health;
mod list_movies;
mod replace_movie;

use actix_web::{http::Method, web};
use common::routes::Routes;

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
