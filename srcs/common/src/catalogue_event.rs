//! Catalogue change events: what inventory-app publishes after every committed change to the
//! catalogue (through its outbox) and what any other service may subscribe to, the gateway's
//! cache first. Body, AMQP properties, routing key and exchange live here side by side, so the
//! contract (documented in `asyncapi.yaml`) is in one place. Versioned by the AMQP `type`
//! property: bump [`CATALOGUE_EVENT_TYPE`] with any incompatible change. Fields may be added
//! without a new version: subscribers ignore fields they do not know.
//!
//! Delivery is at-least-once and, between events about different movies, unordered: a
//! subscriber keys on `event_id` (repeats) and on `movie_version` (a movie's events may arrive
//! out of order).

use chrono::{DateTime, Utc};
use lapin::{
    options::{BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::FieldTable,
    BasicProperties, Channel, Consumer, ExchangeKind,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The topic exchange the events go to (`CATALOGUE_EXCHANGE` overrides it, e.g. per test).
pub const DEFAULT_EXCHANGE: &str = "catalogue.events";
/// AMQP `type` of every catalogue event of this version.
pub const CATALOGUE_EVENT_TYPE: &str = "catalogue.event.v1";

/// One committed change: the routing key is its `type` (`movie.created`, ...), so a subscriber
/// binds `movie.#` for all of them or one key for one kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogueEvent {
    /// Unique per event; a repeat delivery carries the same id.
    pub event_id: Uuid,
    /// When the change was committed (inventory's clock).
    pub occurred_at: DateTime<Utc>,
    #[serde(flatten)]
    pub change: CatalogueChange,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum CatalogueChange {
    /// `movie` is the movie as `GET /api/movies/{id}` answers it.
    #[serde(rename = "movie.created")]
    Created {
        movie_id: i64,
        movie_version: i64,
        movie: serde_json::Value,
    },
    #[serde(rename = "movie.replaced")]
    Replaced {
        movie_id: i64,
        movie_version: i64,
        movie: serde_json::Value,
    },
    /// `movie_version` is the version that was deleted.
    #[serde(rename = "movie.deleted")]
    Deleted { movie_id: i64, movie_version: i64 },
    /// The whole catalogue was emptied (`DELETE /api/movies`); `deleted` movies went.
    #[serde(rename = "movie.all_deleted")]
    AllDeleted { deleted: u64 },
}

impl CatalogueChange {
    /// The routing key, which is also the body's `type`.
    pub fn routing_key(&self) -> &'static str {
        match self {
            Self::Created { .. } => "movie.created",
            Self::Replaced { .. } => "movie.replaced",
            Self::Deleted { .. } => "movie.deleted",
            Self::AllDeleted { .. } => "movie.all_deleted",
        }
    }

    /// The movie it is about; `None` for a change to the whole catalogue.
    pub fn movie_id(&self) -> Option<i64> {
        match self {
            Self::Created { movie_id, .. }
            | Self::Replaced { movie_id, .. }
            | Self::Deleted { movie_id, .. } => Some(*movie_id),
            Self::AllDeleted { .. } => None,
        }
    }
}

impl CatalogueEvent {
    /// A new event (new id, now) for `change`.
    pub fn new(change: CatalogueChange) -> Self {
        Self {
            event_id: Uuid::new_v4(),
            occurred_at: Utc::now(),
            change,
        }
    }

    /// The body as published (and as kept in inventory's outbox until then).
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a catalogue event always serialises")
    }

    /// The AMQP properties of an event whose body is `body` and id `event_id`: persistent,
    /// typed, identified (`message_id`, for subscribers that drop repeats).
    pub fn properties(event_id: Uuid, occurred_at: DateTime<Utc>) -> BasicProperties {
        BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_type(CATALOGUE_EVENT_TYPE.into())
            .with_message_id(event_id.to_string().as_str().into())
            .with_timestamp(occurred_at.timestamp().max(0) as u64)
            .with_app_id("inventory-app".into())
    }

    /// Decodes a delivery; the error says why it is not an event of this version.
    pub fn from_amqp(properties: &BasicProperties, body: &[u8]) -> Result<Self, String> {
        match properties.kind() {
            Some(kind) if kind.as_str() == CATALOGUE_EVENT_TYPE => {}
            other => {
                return Err(format!(
                    "not a {CATALOGUE_EVENT_TYPE} message (type {:?})",
                    other.as_ref().map(|kind| kind.as_str())
                ))
            }
        }
        serde_json::from_slice(body).map_err(|e| format!("invalid catalogue event: {e}"))
    }
}

/// Declares the events' exchange: a durable topic exchange (idempotent; the publisher and every
/// subscriber declare it alike, whichever comes first).
pub async fn declare_exchange(channel: &Channel, exchange: &str) -> Result<(), lapin::Error> {
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
}

/// Every event published to `exchange` from now on, on a queue of this channel's own (exclusive:
/// gone with the connection, so nothing piles up for a subscriber that left), delivered without
/// acknowledgements: what a subscriber that only needs to hear of changes while it listens
/// (the gateway's cache, a test) consumes.
pub async fn subscribe_while_connected(
    channel: &Channel,
    exchange: &str,
    consumer_tag: &str,
) -> Result<Consumer, lapin::Error> {
    declare_exchange(channel, exchange).await?;
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            queue.name().clone(),
            exchange.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    channel
        .basic_consume(
            queue.name().clone(),
            consumer_tag.into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_round_trip_and_name_their_routing_key() {
        let changes = [
            CatalogueChange::Created {
                movie_id: 7,
                movie_version: 1,
                movie: json!({"id": 7, "title": "Alien"}),
            },
            CatalogueChange::Replaced {
                movie_id: 7,
                movie_version: 2,
                movie: json!({"id": 7, "title": "Aliens"}),
            },
            CatalogueChange::Deleted {
                movie_id: 7,
                movie_version: 2,
            },
            CatalogueChange::AllDeleted { deleted: 3 },
        ];
        for change in changes {
            let event = CatalogueEvent::new(change);
            let body = event.body();
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(json["type"], event.change.routing_key());
            assert_eq!(json["event_id"], event.event_id.to_string());
            let properties = CatalogueEvent::properties(event.event_id, event.occurred_at);
            assert_eq!(
                CatalogueEvent::from_amqp(&properties, &body).unwrap(),
                event
            );
        }
    }

    #[test]
    fn other_versions_and_bodies_are_refused_and_new_fields_ignored() {
        let event = CatalogueEvent::new(CatalogueChange::AllDeleted { deleted: 1 });
        let body = event.body();
        let untyped = BasicProperties::default();
        assert!(CatalogueEvent::from_amqp(&untyped, &body).is_err());
        let v2 = BasicProperties::default().with_type("catalogue.event.v2".into());
        assert!(CatalogueEvent::from_amqp(&v2, &body).is_err());
        let properties = CatalogueEvent::properties(event.event_id, event.occurred_at);
        assert!(CatalogueEvent::from_amqp(&properties, b"{}").is_err());
        let mut extended: serde_json::Value = serde_json::from_slice(&body).unwrap();
        extended["added_later"] = json!(true);
        let extended = serde_json::to_vec(&extended).unwrap();
        assert_eq!(
            CatalogueEvent::from_amqp(&properties, &extended).unwrap(),
            event
        );
    }
}
