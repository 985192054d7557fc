use std::time::Duration;

use billing_app::{configuration::Settings, startup::Application};
use common::{
    amqp::OrderQueue,
    order::message::{OrderEnvelope, OrderMessage},
    request_id::RequestId,
};
use lapin::{options::BasicPublishOptions, BasicProperties, Channel};
use test_support::{
    amqp_channel, billing_database, billing_settings, eventually, unique_queue, RunningApp,
    TestDatabase,
};

pub use test_support::order_message as order;

/// A queue and database of the test's own, and a channel to publish with.
pub struct TestBed {
    pub db: TestDatabase,
    pub queue: OrderQueue,
    pub channel: Channel,
}

impl TestBed {
    pub async fn new() -> Self {
        let db = billing_database().await;
        let queue = unique_queue();
        let channel = amqp_channel().await;
        channel
            .confirm_select(Default::default())
            .await
            .expect("confirm mode");
        queue.declare(&channel).await.expect("declare topology");
        Self { db, queue, channel }
    }

    /// billing-app's test settings for this bed, reaching the broker through `amqp_url`.
    pub fn settings(&self, amqp_url: &str) -> Settings {
        let mut settings = billing_settings(&self.db.url, &self.queue);
        settings.brokers = amqp_url.parse().expect("an amqp:// URL");
        settings
    }

    pub async fn start_billing(&self) -> RunningApp {
        self.start_billing_with(self.settings(&test_support::test_amqp_url()))
            .await
    }

    pub async fn start_billing_with(&self, settings: Settings) -> RunningApp {
        RunningApp::start::<Application>(settings).await
    }

    /// Publishes to the order queue and waits for the broker's confirmation.
    pub async fn publish_raw(&self, body: &[u8], properties: BasicProperties) {
        self.publish_raw_to(self.queue.name(), body, properties)
            .await;
    }

    /// Publishes to `queue` (through the default exchange) and waits for the confirmation.
    pub async fn publish_raw_to(&self, queue: &str, body: &[u8], properties: BasicProperties) {
        let confirm = self
            .channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body,
                properties,
            )
            .await
            .expect("publish")
            .await
            .expect("confirmation");
        assert!(confirm.is_ack(), "broker confirmed the publish");
    }

    pub async fn publish(&self, order: &OrderMessage, request_id: &str) {
        let (body, properties) = as_published(order, Some(request_id));
        self.publish_raw(&body, properties).await;
    }

    /// Publishes `count` orders, users "0" to "count - 1", one item each at `amount`.
    pub async fn publish_orders(&self, count: i64, amount: &str, request_id: &str) {
        for user in 0..count {
            self.publish(&order(&user.to_string(), "1", amount), request_id)
                .await;
        }
    }

    pub async fn rows(&self) -> i64 {
        let client = self.db.client().await;
        client
            .query_one("SELECT count(*) FROM orders", &[])
            .await
            .unwrap()
            .get(0)
    }

    pub async fn wait_for_rows(&self, expected: i64) {
        eventually(
            Duration::from_secs(20),
            &format!("{expected} rows in orders"),
            || async { self.rows().await == expected },
        )
        .await;
        // And no more than that arrive afterwards.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(self.rows().await, expected);
    }

    pub async fn ready_messages(&self, queue: &str) -> u32 {
        test_support::queue_depth(&self.channel, queue).await
    }

    pub async fn dead_letters(&self) -> u32 {
        self.ready_messages(&self.queue.dead_letter_queue()).await
    }

    pub async fn wait_for_dead_letters(&self, expected: u32) {
        eventually(
            Duration::from_secs(20),
            &format!("{expected} messages in the dead-letter queue"),
            || async { self.dead_letters().await == expected },
        )
        .await;
    }
}

/// One series of a running billing-app's metrics.
pub async fn metric_of(billing: &RunningApp, series: &str) -> f64 {
    let scrape = test_support::get_text(&reqwest::Client::new(), billing.url("/metrics")).await;
    test_support::metric(&scrape, series)
}

/// The body and properties the gateway publishes `order` with.
pub fn as_published(order: &OrderMessage, request_id: Option<&str>) -> (Vec<u8>, BasicProperties) {
    OrderEnvelope {
        message: order.clone(),
        request_id: request_id.map(|id| RequestId::parse(id).expect("a valid request id")),
        traceparent: None,
    }
    .to_amqp()
}
