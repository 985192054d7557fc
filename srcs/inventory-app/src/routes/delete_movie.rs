use actix_web::{web, HttpResponse};
use common::auth::Admin;
use deadpool_postgres::Pool;

use crate::{domain::MovieId, error::InventoryError, store};

/// `DELETE /api/movies/{id}`: 204, or 404 if there is no such movie.
pub(crate) async fn delete_movie(
    _: Admin,
    pool: web::Data<Pool>,
    id: web::Path<String>,
) -> Result<HttpResponse, InventoryError> {
    let id = MovieId::parse(&id)?;
    let client = pool.get().await?;
    if store::delete(&client, id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(InventoryError::NotFound(id))
    }
}
