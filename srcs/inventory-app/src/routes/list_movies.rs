use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use deadpool_postgres::Pool;
use serde::Serialize;

use crate::{
    domain::{Movie, MovieListQuery},
    error::InventoryError,
    store,
};

/// One page of the catalogue and how to get the next.
#[derive(Serialize)]
struct MoviePage {
    movies: Vec<Movie>,
    limit: i64,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
    /// The next page's path and query; `null` on the last page.
    next: Option<String>,
}

/// `GET /api/movies`: one page of the catalogue in id order, with the link to the next page.
pub(crate) async fn list_movies(
    pool: web::Data<Pool>,
    params: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, InventoryError> {
    let query = MovieListQuery::parse(&params)?;
    let client = pool.get().await?;
    let (movies, has_more) = store::list(&client, &query).await?;
    let last_id = movies.last().map(|m| m.id).filter(|_| has_more);
    Ok(HttpResponse::Ok().json(MoviePage {
        limit: query.limit,
        next_cursor: last_id.map(|id| id.to_string()),
        next: last_id.map(|id| query.next_link(id)),
        movies,
    }))
}
