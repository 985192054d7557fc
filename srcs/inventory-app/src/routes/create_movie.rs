use actix_web::{http::header, web, HttpRequest, HttpResponse};
use common::{auth::Admin, conditional::Preconditions, json_fields::RawObject};
use deadpool_postgres::Pool;

use crate::{domain::MovieDraft, error::InventoryError, relay::Wake, store};

/// `POST /api/movies`: 201 with the stored movie, its `Location` and its `ETag`. A precondition
/// other than `If-Match: *` cannot hold (the catalogue has no entity tag): 412.
pub(crate) async fn create_movie(
    _: Admin,
    req: HttpRequest,
    pool: web::Data<Pool>,
    relay: web::Data<Wake>,
    body: web::Json<RawObject>,
) -> Result<HttpResponse, InventoryError> {
    if !Preconditions::of(&req).hold_for_untagged() {
        return Err(InventoryError::CatalogueUntagged);
    }
    let draft = MovieDraft::from_json(body.into_inner())?;
    let mut client = pool.get().await?;
    let movie = store::insert(&mut client, &draft).await?;
    relay.committed();
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/movies/{}", movie.id)))
        .insert_header(header::ETag(movie.etag()))
        .json(movie))
}
