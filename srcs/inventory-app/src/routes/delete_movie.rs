use actix_web::{web, HttpRequest, HttpResponse};
use common::{auth::Admin, conditional::Preconditions};
use deadpool_postgres::Pool;

use crate::{
    domain::MovieId,
    error::InventoryError,
    relay::Wake,
    store::{self, Written},
};

/// `DELETE /api/movies/{id}`: 204, or 404 if there is no such movie; with `If-Match`, only if
/// the movie is still as the client has it (412 if it changed meanwhile).
pub(crate) async fn delete_movie(
    _: Admin,
    req: HttpRequest,
    pool: web::Data<Pool>,
    relay: web::Data<Wake>,
    id: web::Path<String>,
) -> Result<HttpResponse, InventoryError> {
    let id = MovieId::parse(&id)?;
    let preconditions = Preconditions::of(&req);
    let mut client = pool.get().await?;
    match store::delete(&mut client, id, &preconditions).await? {
        Written::Done(()) => {
            relay.committed();
            Ok(HttpResponse::NoContent().finish())
        }
        Written::Missing => Err(InventoryError::NotFound(id)),
        Written::PreconditionFailed => Err(InventoryError::Changed(id)),
    }
}
