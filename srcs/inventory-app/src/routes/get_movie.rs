use actix_web::{web, HttpRequest, HttpResponse};
use deadpool_postgres::Pool;

use crate::{domain::MovieId, error::InventoryError, routes::cacheable, store};

/// `GET /api/movies/{id}` (and `HEAD`): the movie with its `ETag`; 304 if the client's copy
/// (`If-None-Match`) is current.
pub(crate) async fn get_movie(
    req: HttpRequest,
    pool: web::Data<Pool>,
    id: web::Path<String>,
) -> Result<HttpResponse, InventoryError> {
    let id = MovieId::parse(&id)?;
    let client = pool.get().await?;
    let movie = store::get(&client, id)
        .await?
        .ok_or(InventoryError::NotFound(id))?;
    let body = serde_json::to_vec(&movie).expect("a movie always serialises");
    cacheable(&req, movie.etag(), body)
}
