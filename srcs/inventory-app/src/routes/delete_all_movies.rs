use actix_web::{web, HttpResponse};
use common::auth::Admin;
use deadpool_postgres::Pool;
use serde_json::json;

use crate::{error::InventoryError, store};

/// `DELETE /api/movies`: empties the catalogue, as the original system did; says how many went.
pub(crate) async fn delete_all_movies(
    _: Admin,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, InventoryError> {
    let client = pool.get().await?;
    let deleted = store::delete_all(&client).await?;
    Ok(HttpResponse::Ok().json(json!({ "deleted": deleted })))
}
