use actix_web::{http::header, web, HttpRequest, HttpResponse};
use chrono::Utc;
use common::{
    json_fields::RawObject,
    order::{
        message::{OrderEnvelope, OrderMessage, TraceParent},
        PayloadFingerprint,
    },
    request_id::RequestId,
};
use serde::Serialize;
use uuid::Uuid;

use crate::{
    domain::{new_order_id, parse_order, IdempotencyKey},
    error::GatewayError,
    idempotency::{Claim, RecentKeys},
    publisher::{OrderPublisher, PublishError},
};

/// `POST /api/billing`: validates the order, publishes it persistently and answers 202 only
/// once the broker has confirmed it. With an Idempotency-Key, a retry is answered like the
/// first request, and a key reused for another payload is refused (see `idempotency`).
pub(crate) async fn create_order(
    req: HttpRequest,
    body: web::Json<RawObject>,
    publisher: web::Data<OrderPublisher>,
    recent_keys: web::Data<RecentKeys>,
    request_id: RequestId,
) -> Result<HttpResponse, GatewayError> {
    let key = IdempotencyKey::from_headers(req.headers())?;
    let order = parse_order(body.into_inner())?;
    let order_id = new_order_id(&order.user_id, key.as_ref());
    let message = OrderMessage::new(order_id, order, Utc::now());
    let fingerprint = message
        .payload_fingerprint
        .clone()
        .expect("a new message carries its fingerprint");
    let envelope = OrderEnvelope {
        message,
        traceparent: req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(TraceParent::parse),
        request_id: Some(request_id.clone()),
    };
    let publishing = match key.map(|_| recent_keys.claim(order_id, &fingerprint)) {
        None => None,
        Some(Claim::New(publishing)) => Some(publishing),
        Some(Claim::AlreadyQueued) => {
            log::info!("request_id={request_id} order_id={order_id} already queued (retry)");
            return Ok(queued(order_id, fingerprint));
        }
        Some(Claim::InFlight) => return Err(GatewayError::IdempotencyKeyInFlight),
        Some(Claim::Conflict) => return Err(GatewayError::IdempotencyKeyReused),
    };
    match publishing {
        // A client that goes away mid-publish does not cancel it (the broker may confirm it
        // all the same), so the key's fate is settled on a task of its own: a later request
        // with another payload then gets its 422 rather than a second 202.
        Some(publishing) => {
            let publisher = publisher.get_ref().clone();
            tokio::spawn(async move {
                let result = publisher.publish(&envelope).await;
                match &result {
                    Ok(()) => publishing.queued(),
                    // The message may be queued all the same: the key stays this payload's.
                    Err(PublishError::Timeout(_) | PublishError::Broker(_)) => {
                        publishing.maybe_queued()
                    }
                    // Certainly not queued: the key is free again.
                    Err(_) => drop(publishing),
                }
                result
            })
            .await
            .unwrap_or(Err(PublishError::NotConnected))?
        }
        None => publisher.publish(&envelope).await?,
    }
    log::info!("request_id={request_id} order_id={order_id} queued");
    Ok(queued(order_id, fingerprint))
}

/// The 202 answer.
fn queued(order_id: Uuid, payload_fingerprint: PayloadFingerprint) -> HttpResponse {
    HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/api/billing/{order_id}")))
        .json(OrderQueued {
            message: "Order queued for processing",
            status: "queued",
            order_id,
            payload_fingerprint,
        })
}

/// The 202 body.
#[derive(Serialize)]
struct OrderQueued {
    message: &'static str,
    status: &'static str,
    order_id: Uuid,
    /// Compare with the order status's: a retry under a key already used elsewhere for another
    /// payload shows up there as a conflict.
    payload_fingerprint: PayloadFingerprint,
}
