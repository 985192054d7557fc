//! The order message: what the gateway publishes and billing consumes, body and AMQP properties
//! together, encoded and decoded side by side so that the contract lives here only. Versioned
//! by the AMQP `type` property; bump [`ORDER_MESSAGE_TYPE`] with any incompatible change and
//! keep decoding the versions that may still be queued.

use chrono::{DateTime, Utc};
use lapin::{
    types::{AMQPValue, FieldTable},
    BasicProperties,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Amount, NumberOfItems, Order, PayloadFingerprint, UserId};
use crate::request_id::RequestId;

/// AMQP `type` of the messages published now. v2 added `payload_fingerprint`.
pub const ORDER_MESSAGE_TYPE: &str = "order.created.v2";
/// The types billing decodes: v1 messages (no fingerprint) may still be queued from before an
/// upgrade.
const DECODED_TYPES: [&str; 2] = [ORDER_MESSAGE_TYPE, "order.created.v1"];
/// AMQP header carrying the W3C trace context of the request that created the order.
const TRACEPARENT_HEADER: &str = "traceparent";

/// The message body, as JSON. Unknown fields are refused so that a producer speaking another
/// version is noticed (and dead-lettered) instead of half understood.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderMessage {
    pub order_id: Uuid,
    pub user_id: UserId,
    pub number_of_items: NumberOfItems,
    pub total_amount: Amount,
    /// When the gateway accepted the order.
    pub received_at: DateTime<Utc>,
    /// The order's [`PayloadFingerprint`] (absent in v1 messages): when an Idempotency-Key is
    /// reused with another payload, billing records the second payload as a conflict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_fingerprint: Option<PayloadFingerprint>,
}

impl OrderMessage {
    pub fn new(order_id: Uuid, order: Order, received_at: DateTime<Utc>) -> Self {
        Self {
            payload_fingerprint: Some(PayloadFingerprint::of(&order)),
            order_id,
            user_id: order.user_id,
            number_of_items: order.number_of_items,
            total_amount: order.total_amount,
            received_at,
        }
    }
}

/// A W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), checked so that a header from a client
/// or a producer can go into log lines safely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent(String);

impl TraceParent {
    pub fn parse(text: &str) -> Option<Self> {
        let parts: Vec<&str> = text.split('-').collect();
        let well_formed = parts.len() == 4
            && [2, 32, 16, 2].iter().zip(&parts).all(|(len, part)| {
                part.len() == *len && part.bytes().all(|b| b.is_ascii_hexdigit())
            });
        well_formed.then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An order as it travels on the queue: the body, and what the AMQP properties carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderEnvelope {
    pub message: OrderMessage,
    /// The HTTP request that created the order (the AMQP correlation id), so one grep follows an
    /// order from the gateway's log line to billing's.
    pub request_id: Option<RequestId>,
    /// That request's trace context, when it had one (the `traceparent` header).
    pub traceparent: Option<TraceParent>,
}

impl OrderEnvelope {
    /// The body and the properties to publish: persistent, typed, identified, traceable.
    pub fn to_amqp(&self) -> (Vec<u8>, BasicProperties) {
        let body = serde_json::to_vec(&self.message).expect("an order message always serialises");
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_type(ORDER_MESSAGE_TYPE.into())
            .with_message_id(self.message.order_id.to_string().as_str().into())
            .with_timestamp(self.message.received_at.timestamp().max(0) as u64)
            .with_app_id("api-gateway".into());
        if let Some(id) = &self.request_id {
            properties = properties.with_correlation_id(id.as_str().into());
        }
        if let Some(context) = &self.traceparent {
            let mut headers = FieldTable::default();
            headers.insert(
                TRACEPARENT_HEADER.into(),
                AMQPValue::LongString(context.as_str().into()),
            );
            properties = properties.with_headers(headers);
        }
        (body, properties)
    }

    /// The request id a delivery carries (its correlation id), if it is a sane one; for the log
    /// line of a delivery that cannot be decoded otherwise.
    pub fn request_id_of(properties: &BasicProperties) -> Option<RequestId> {
        properties
            .correlation_id()
            .as_ref()
            .and_then(|id| RequestId::parse(id.as_str()))
    }

    /// Decodes and validates a delivery; the error says why it can never be processed. A
    /// message without a `type` is read as the current version.
    pub fn from_amqp(properties: &BasicProperties, body: &[u8]) -> Result<Self, String> {
        if let Some(kind) = properties.kind() {
            if !DECODED_TYPES.contains(&kind.as_str()) {
                return Err(format!("unsupported message type {:?}", kind.as_str()));
            }
        }
        let message: OrderMessage =
            serde_json::from_slice(body).map_err(|e| format!("invalid order message: {e}"))?;
        if !plausible_receipt(message.received_at) {
            return Err(format!(
                "invalid order message: received_at {} is not a plausible time (from the year 2000 to a day ahead of this machine's clock)",
                message.received_at
            ));
        }
        let request_id = Self::request_id_of(properties);
        let traceparent = properties.headers().as_ref().and_then(|headers| {
            match headers.inner().get(TRACEPARENT_HEADER) {
                Some(AMQPValue::LongString(text)) => {
                    TraceParent::parse(&String::from_utf8_lossy(text.as_bytes()))
                }
                _ => None,
            }
        });
        Ok(Self {
            message,
            request_id,
            traceparent,
        })
    }
}

/// What a gateway's clock can have said: the database would store far-off years (or refuse
/// some, dead-lettering the message only after a failed write), and neither is an order.
fn plausible_receipt(received_at: DateTime<Utc>) -> bool {
    let earliest = DateTime::from_timestamp(946_684_800, 0).expect("2000-01-01 is a valid time");
    (earliest..=Utc::now() + chrono::Duration::days(1)).contains(&received_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn envelope() -> OrderEnvelope {
        let order = Order {
            user_id: UserId::parse("88").unwrap(),
            number_of_items: NumberOfItems::parse("2").unwrap(),
            total_amount: Amount::parse("45.00").unwrap(),
        };
        OrderEnvelope {
            message: OrderMessage::new(Uuid::new_v4(), order, Utc::now()),
            request_id: RequestId::parse("req-1"),
            traceparent: TraceParent::parse(TRACE),
        }
    }

    #[test]
    fn the_envelope_round_trips_through_body_and_properties() {
        let sent = envelope();
        let (body, properties) = sent.to_amqp();
        assert_eq!(properties.delivery_mode(), &Some(2), "persistent");
        assert_eq!(
            properties.kind().as_ref().map(|k| k.as_str()),
            Some(ORDER_MESSAGE_TYPE)
        );
        assert_eq!(
            properties.message_id().as_ref().map(|k| k.to_string()),
            Some(sent.message.order_id.to_string())
        );
        assert_eq!(OrderEnvelope::from_amqp(&properties, &body), Ok(sent));
    }

    #[test]
    fn a_v1_message_without_a_fingerprint_or_properties_still_decodes() {
        let v1 = br#"{"order_id": "6f1c3b7e-8a54-4d0b-9e2f-51a7c4d802be", "user_id": "88",
            "number_of_items": 2, "total_amount": "45.00", "received_at": "2026-01-01T00:00:00Z"}"#;
        let typed = BasicProperties::default().with_type("order.created.v1".into());
        for properties in [typed, BasicProperties::default()] {
            let decoded = OrderEnvelope::from_amqp(&properties, v1).unwrap();
            assert_eq!(decoded.message.payload_fingerprint, None);
            assert_eq!(decoded.request_id, None);
        }
    }

    #[test]
    fn what_billing_cannot_process_is_refused_with_the_reason() {
        let (body, properties) = envelope().to_amqp();
        let v3 = properties.clone().with_type("order.created.v3".into());
        assert!(OrderEnvelope::from_amqp(&v3, &body)
            .unwrap_err()
            .contains("unsupported message type"));

        let mut json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["total_amount"], "45.00");
        json["total_amount"] = "-5".into();
        let negative = json.to_string();
        json["total_amount"] = "5".into();
        let mut implausible = Vec::new();
        for when in [
            "+200000-01-01T00:00:00Z",
            "-200000-01-01T00:00:00Z",
            "1999-12-31T23:59:59Z",
        ] {
            json["received_at"] = when.into();
            implausible.push(json.to_string());
        }
        json["received_at"] = (Utc::now() + chrono::Duration::hours(23))
            .to_rfc3339()
            .into();
        assert!(OrderEnvelope::from_amqp(&properties, json.to_string().as_bytes()).is_ok());
        json["surprise"] = 1.into();
        let unknown_field = json.to_string();
        let bad = implausible.iter().map(String::as_bytes);
        for bad in bad.chain([negative.as_bytes(), unknown_field.as_bytes(), b"not json"]) {
            assert!(OrderEnvelope::from_amqp(&properties, bad)
                .unwrap_err()
                .contains("invalid order message"));
        }
    }

    #[test]
    fn unsafe_ids_and_trace_contexts_are_dropped_not_logged() {
        let (body, properties) = envelope().to_amqp();
        let mut headers = FieldTable::default();
        headers.insert(
            TRACEPARENT_HEADER.into(),
            AMQPValue::LongString("00-x\nforged-line".into()),
        );
        let forged = properties
            .with_correlation_id("a b\nforged".into())
            .with_headers(headers);
        let decoded = OrderEnvelope::from_amqp(&forged, &body).unwrap();
        assert_eq!((decoded.request_id, decoded.traceparent), (None, None));
        assert!(TraceParent::parse(TRACE).is_some());
        assert!(TraceParent::parse("00-abc-def-01").is_none());
    }
}
