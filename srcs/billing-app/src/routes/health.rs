use std::time::Duration;

use actix_web::{web, HttpResponse};
use common::health;
use deadpool_postgres::Pool;

use crate::metrics::ConsumerMetrics;

/// `GET /ready`: the database answers and the consumer is connected to the broker.
pub async fn ready(pool: web::Data<Pool>, consumer: web::Data<ConsumerMetrics>) -> HttpResponse {
    let database = health::database_is_up(&pool, Duration::from_secs(1)).await;
    health::readiness(&[("database", database), ("broker", consumer.is_consuming())])
}
