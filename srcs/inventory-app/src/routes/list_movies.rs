use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use deadpool_postgres::Pool;
use serde_json::json;

use crate::{domain::MovieListQuery, error::InventoryError, store};

/// `GET /api/movies`: one page of the catalogue in id order, with the link to the next page.
pub async fn list_movies(
    pool: web::Data<Pool>,
    params: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, InventoryError> {
    let query = MovieListQuery::parse(&params)?;
    let client = pool.get().await?;
    let (movies, has_more) = store::list(&**client, &query).await?;
    let next_cursor = has_more.then(|| movies.last().map(|m| m.id)).flatten();
    Ok(HttpResponse::Ok().json(json!({
        "movies": movies,
        "limit": query.limit,
        "next_cursor": next_cursor.map(|id| id.to_string()),
        "next": next_cursor.map(|id| query.next_link(id)),
    })))
}
