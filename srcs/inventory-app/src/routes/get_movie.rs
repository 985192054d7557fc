use actix_web::{web, HttpResponse};
use deadpool_postgres::Pool;

use crate::{domain::MovieId, error::InventoryError, store};

/// `GET /api/movies/{id}`.
pub(crate) async fn get_movie(
    pool: web::Data<Pool>,
    id: web::Path<String>,
) -> Result<HttpResponse, InventoryError> {
    let id = MovieId::parse(&id)?;
    let client = pool.get().await?;
    let movie = store::get(&client, id)
        .await?
        .ok_or(InventoryError::NotFound(id))?;
    Ok(HttpResponse::Ok().json(movie))
}
