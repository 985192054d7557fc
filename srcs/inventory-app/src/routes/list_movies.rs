use std::collections::HashMap;

use actix_web::{http::header::EntityTag, web, HttpRequest, HttpResponse};
use deadpool_postgres::Pool;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{
    domain::{Movie, MovieListQuery},
    error::InventoryError,
    routes::cacheable,
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

/// `GET /api/movies` (and `HEAD`): one page of the catalogue in id order, with the link to the
/// next page. Its `ETag` is a digest of the page, so any change to what the page shows changes it.
pub(crate) async fn list_movies(
    req: HttpRequest,
    pool: web::Data<Pool>,
    params: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, InventoryError> {
    let query = MovieListQuery::parse(&params)?;
    let client = pool.get().await?;
    let (movies, has_more) = store::list(&client, &query).await?;
    let last_id = movies.last().map(|m| m.id).filter(|_| has_more);
    let page = MoviePage {
        limit: query.limit,
        next_cursor: last_id.map(|id| id.to_string()),
        next: last_id.map(|id| query.next_link(id)),
        movies,
    };
    let body = serde_json::to_vec(&page).expect("a page always serialises");
    let digest = Sha256::digest(&body);
    let tag = digest[..12]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<String>();
    cacheable(&req, EntityTag::new_strong(format!("p{tag}")), body)
}
