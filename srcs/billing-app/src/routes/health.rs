use std::time::Duration;

use actix_web::{web, HttpResponse};
use common::health;
use deadpool_postgres::Pool;

use crate::consumer::ConsumerStatus;

/// `GET /ready`: the database answers and the consumer is connected to the broker.
pub(crate) async fn ready(
    pool: web::Data<Pool>,
    consumer: web::Data<ConsumerStatus>,
) -> HttpResponse {
    let database = database::is_up(&pool, Duration::from_secs(1)).await;
    health::readiness(
        &[("database", database), ("broker", consumer.is_consuming())],
        &[("broker", consumer.node())],
    )
}
