use std::time::Duration;

use actix_web::{web, HttpResponse};
use common::{
    health,
    metrics::{self, Metrics, PoolGauges},
};
use deadpool_postgres::Pool;

/// `GET /ready`: the database answers.
pub async fn ready(pool: web::Data<Pool>) -> HttpResponse {
    let database = health::database_is_up(&pool, Duration::from_secs(1)).await;
    health::readiness(&[("database", database)])
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(
    metrics: web::Data<Metrics>,
    pool_gauges: web::Data<PoolGauges>,
    pool: web::Data<Pool>,
) -> HttpResponse {
    pool_gauges.refresh(&pool);
    metrics::exposition(&metrics)
}
