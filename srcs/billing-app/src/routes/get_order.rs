use actix_web::{
    http::{header, StatusCode},
    web, HttpResponse,
};
use common::problem::Problem;
use deadpool_postgres::Pool;
use uuid::Uuid;

use crate::{error::BillingError, store};

/// `GET /api/billing/{order_id}`: the order as billed, or 404 while it is not (yet).
pub(crate) async fn get_order(
    pool: web::Data<Pool>,
    order_id: web::Path<String>,
) -> Result<HttpResponse, BillingError> {
    let order_id = Uuid::parse_str(&order_id).map_err(|_| {
        BillingError::BadRequest(
            Problem::new(StatusCode::BAD_REQUEST).with_detail("The order id must be a UUID."),
        )
    })?;
    let client = pool.get().await?;
    let order = store::find_order(&**client, order_id)
        .await?
        .ok_or(BillingError::NotFound(order_id))?;
    // One user's order, and it changes (404 until billed): no cache may keep it (a problem,
    // the 404, says no-store too).
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(order))
}
