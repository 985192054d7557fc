use actix_web::{http::header, web, HttpRequest, HttpResponse};
use common::{auth::Admin, conditional::Preconditions, json_fields::RawObject};
use deadpool_postgres::Pool;

use crate::{
    domain::{MovieDraft, MovieId},
    error::InventoryError,
    relay::Wake,
    store::{self, Written},
};

/// `PUT /api/movies/{id}`: replaces every field (an omitted optional field is cleared); with
/// `If-Match`, only if the movie is still as the client has it (412 if it changed meanwhile);
/// `If-None-Match` is honoured too.
pub(crate) async fn replace_movie(
    _: Admin,
    req: HttpRequest,
    pool: web::Data<Pool>,
    relay: web::Data<Wake>,
    id: web::Path<String>,
    body: web::Json<RawObject>,
) -> Result<HttpResponse, InventoryError> {
    let id = MovieId::parse(&id)?;
    let preconditions = Preconditions::of(&req);
    let draft = MovieDraft::from_json(body.into_inner())?;
    let mut client = pool.get().await?;
    match store::replace(&mut client, id, &draft, &preconditions).await? {
        Written::Done(movie) => {
            relay.committed();
            Ok(HttpResponse::Ok()
                .insert_header(header::ETag(movie.etag()))
                .json(movie))
        }
        Written::Missing => Err(InventoryError::NotFound(id)),
        Written::PreconditionFailed => Err(InventoryError::Changed(id)),
    }
}
