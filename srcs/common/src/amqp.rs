//! RabbitMQ: connecting, and the queue topology that the gateway (producer) and billing
//! (consumer) both declare. Declaring with different arguments fails on the broker, so the
//! arguments live here only.

use std::time::Duration;

use lapin::{
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
    Channel, Connection, ConnectionProperties, ExchangeKind,
};
use uuid::Uuid;

/// How often a message may be delivered before the broker dead-letters it: a message that
/// crashes the consumer every time ends in the dead-letter queue instead of looping forever.
pub const DELIVERY_LIMIT: i64 = 20;

#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    #[error("AMQP connection to the broker timed out after {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Lapin(#[from] lapin::Error),
}

/// Connects within `timeout`; `name` shows in the broker's connection list.
pub async fn connect(url: &str, name: &str, timeout: Duration) -> Result<Connection, AmqpError> {
    let properties = ConnectionProperties::default().with_connection_name(LongString::from(name));
    let connection = tokio::time::timeout(timeout, Connection::connect(url, properties))
        .await
        .map_err(|_| AmqpError::Timeout(timeout))??;
    Ok(connection)
}

/// The orders queue (a durable quorum queue) and its dead-letter exchange and queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderQueue {
    name: String,
}

impl OrderQueue {
    pub const DEFAULT_NAME: &'static str = "billing_queue";

    /// A queue name of 1 to 200 characters from `[A-Za-z0-9._-]`.
    pub fn new(name: &str) -> Result<Self, String> {
        let ok = !name.is_empty()
            && name.len() <= 200
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self {
                name: name.to_owned(),
            })
        } else {
            Err("must be 1 to 200 characters from A-Z, a-z, 0-9, '.', '_' and '-'".to_owned())
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.name)
    }

    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead-letter", self.name)
    }

    /// Quorum queue: replicated-log durability, and the only kind with a delivery limit on
    /// RabbitMQ 3.10 (Debian 12) as on 4.x. Dead-lettering is at-least-once, so a poison message
    /// is never lost on its way to the dead-letter queue (this requires `reject-publish`).
    fn arguments(&self) -> FieldTable {
        let mut args = FieldTable::default();
        let mut put = |key: &str, value: AMQPValue| {
            args.insert(ShortString::from(key), value);
        };
        put("x-queue-type", AMQPValue::LongString("quorum".into()));
        put("x-delivery-limit", AMQPValue::LongLongInt(DELIVERY_LIMIT));
        put(
            "x-dead-letter-exchange",
            AMQPValue::LongString(self.dead_letter_exchange().as_str().into()),
        );
        put(
            "x-dead-letter-strategy",
            AMQPValue::LongString("at-least-once".into()),
        );
        put("x-overflow", AMQPValue::LongString("reject-publish".into()));
        args
    }

    /// Declares everything (idempotent: the same arguments every time).
    pub async fn declare(&self, channel: &Channel) -> Result<(), lapin::Error> {
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .exchange_declare(
                self.dead_letter_exchange().as_str().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_declare(
                self.dead_letter_queue().as_str().into(),
                durable,
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_bind(
                self.dead_letter_queue().as_str().into(),
                self.dead_letter_exchange().as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_declare(self.name.as_str().into(), durable, self.arguments())
            .await?;
        Ok(())
    }
}

/// A consumer tag that tells which process holds a delivery.
pub fn consumer_tag(service: &str) -> String {
    format!(
        "{service}-{}-{}",
        std::process::id(),
        Uuid::new_v4().simple()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_are_checked_and_derived() {
        let queue = OrderQueue::new("billing_queue").unwrap();
        assert_eq!(queue.dead_letter_exchange(), "billing_queue.dlx");
        assert_eq!(queue.dead_letter_queue(), "billing_queue.dead-letter");
        assert!(OrderQueue::new("").is_err());
        assert!(OrderQueue::new("has space").is_err());
        assert!(OrderQueue::new(&"q".repeat(201)).is_err());
    }

    #[test]
    fn queue_arguments_carry_an_explicit_delivery_limit_and_dead_letter_exchange() {
        let args = OrderQueue::new("q").unwrap().arguments();
        let inner = args.inner();
        assert_eq!(
            inner.get("x-delivery-limit"),
            Some(&AMQPValue::LongLongInt(DELIVERY_LIMIT))
        );
        assert_eq!(
            inner.get("x-dead-letter-exchange"),
            Some(&AMQPValue::LongString("q.dlx".into()))
        );
        assert_eq!(
            inner.get("x-queue-type"),
            Some(&AMQPValue::LongString("quorum".into()))
        );
    }
}
