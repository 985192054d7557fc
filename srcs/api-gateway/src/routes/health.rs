use std::time::Duration;

use actix_web::{web, HttpResponse};
use common::health;

use crate::{publisher::OrderPublisher, upstream::Upstreams};

/// `GET /ready`: connected to the broker, and inventory answers.
pub(crate) async fn ready(
    publisher: web::Data<OrderPublisher>,
    upstreams: web::Data<Upstreams>,
) -> HttpResponse {
    let inventory = upstreams.inventory.is_up(Duration::from_secs(1)).await;
    health::readiness(
        &[
            ("broker", publisher.is_connected()),
            ("inventory", inventory),
        ],
        &[("broker", publisher.connected_node())],
    )
}
