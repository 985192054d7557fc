use std::time::Duration;

use actix_web::{web, HttpResponse};
use common::{
    health,
    metrics::{self, Metrics},
};

use crate::{publisher::OrderPublisher, startup::Upstreams};

/// `GET /ready`: connected to the broker, and inventory answers.
pub async fn ready(
    publisher: web::Data<OrderPublisher>,
    upstreams: web::Data<Upstreams>,
) -> HttpResponse {
    let inventory = upstreams.inventory.is_up(Duration::from_secs(1)).await;
    health::readiness(&[
        ("broker", publisher.is_connected()),
        ("inventory", inventory),
    ])
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(metrics: web::Data<Metrics>) -> HttpResponse {
    metrics::exposition(&metrics)
}
