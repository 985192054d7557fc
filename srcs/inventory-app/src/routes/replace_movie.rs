use actix_web::{http::header, web, HttpRequest, HttpResponse};
use common::{auth::Admin, conditional::Precondition, json_fields::RawObject};
use deadpool_postgres::Pool;

use crate::{
    domain::{MovieDraft, MovieId},
    error::InventoryError,
    store::{self, Written},
};

/// `PUT /api/movies/{id}`: replaces every field (an omitted optional field is cleared); with
/// `If-Match`, only if the movie is still in that version (412 if it changed meanwhile).
pub(crate) async fn replace_movie(
    _: Admin,
    req: HttpRequest,
    pool: web::Data<Pool>,
    id: web::Path<String>,
    body: web::Json<RawObject>,
) -> Result<HttpResponse, InventoryError> {
    let id = MovieId::parse(&id)?;
    let precondition = Precondition::of(&req);
    let draft = MovieDraft::from_json(body.into_inner())?;
    let client = pool.get().await?;
    match store::replace(&client, id, &draft, &precondition).await? {
        Written::Done(movie) => Ok(HttpResponse::Ok()
            .insert_header(header::ETag(movie.etag()))
            .json(movie)),
        Written::Missing => Err(InventoryError::NotFound(id)),
        Written::PreconditionFailed => Err(InventoryError::Changed(id)),
    }
}
