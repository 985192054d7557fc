use actix_web::{web, HttpRequest, HttpResponse};
use common::{auth::Admin, conditional::Preconditions};
use deadpool_postgres::Pool;
use serde_json::json;

use crate::{error::InventoryError, relay::Wake, store};

/// `DELETE /api/movies`: empties the catalogue, as the original system did; says how many went.
/// A precondition other than `If-Match: *` cannot hold (the catalogue has no entity tag): 412.
pub(crate) async fn delete_all_movies(
    _: Admin,
    req: HttpRequest,
    pool: web::Data<Pool>,
    relay: web::Data<Wake>,
) -> Result<HttpResponse, InventoryError> {
    if !Preconditions::of(&req).hold_for_untagged() {
        return Err(InventoryError::CatalogueUntagged);
    }
    let mut client = pool.get().await?;
    let deleted = store::delete_all(&mut client).await?;
    relay.committed();
    Ok(HttpResponse::Ok().json(json!({ "deleted": deleted })))
}
