use std::time::Duration;

use actix_web::{web, HttpResponse};
use common::health;
use deadpool_postgres::Pool;

/// `GET /ready`: the database answers.
pub(crate) async fn ready(pool: web::Data<Pool>) -> HttpResponse {
    let database = database::is_up(&pool, Duration::from_secs(1)).await;
    health::readiness(&[("database", database)], &[])
}
