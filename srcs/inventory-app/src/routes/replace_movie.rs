use actix_web::{web, HttpResponse};
use common::{auth::Admin, json_fields::RawObject};
use deadpool_postgres::Pool;

use crate::{
    domain::{MovieDraft, MovieId},
    error::InventoryError,
    store,
};

/// `PUT /api/movies/{id}`: replaces every field (an omitted optional field is cleared).
pub(crate) async fn replace_movie(
    _: Admin,
    pool: web::Data<Pool>,
    id: web::Path<String>,
    body: web::Json<RawObject>,
) -> Result<HttpResponse, InventoryError> {
    let id = MovieId::parse(&id)?;
    let draft = MovieDraft::from_json(body.into_inner())?;
    let client = pool.get().await?;
    let movie = store::replace(&client, id, &draft)
        .await?
        .ok_or(InventoryError::NotFound(id))?;
    Ok(HttpResponse::Ok().json(movie))
}
