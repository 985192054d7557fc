use std::time::Duration;

use common::{
    amqp::OrderQueue,
    order::{message::OrderMessage, Amount, NumberOfItems, Order, UserId},
};
use lapin::{Channel, Connection, ConnectionProperties};
use uuid::Uuid;

use crate::required_env;

/// The test broker's URL (a vhost of its own), from `TEST_AMQP_URL`.
pub fn test_amqp_url() -> String {
    required_env("TEST_AMQP_URL")
}

/// `AMQP_URL` for the three-node test cluster (every node, `movie-a` first), from
/// `TEST_AMQP_CLUSTER_URL`.
pub fn test_cluster_url() -> String {
    required_env("TEST_AMQP_CLUSTER_URL")
}

/// A queue name no other test uses.
pub fn unique_queue() -> OrderQueue {
    OrderQueue::new(&format!("test-{}", Uuid::new_v4().simple())).expect("valid queue name")
}

/// The catalogue's change events' exchange for this test process: its inventories publish
/// there and its gateways subscribe there, apart from other processes' tests. A test that
/// counts events gets an exchange of its own with [`unique_exchange`].
pub fn test_catalogue_exchange() -> &'static str {
    static EXCHANGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    EXCHANGE.get_or_init(unique_exchange)
}

/// An exchange name no other test uses.
pub fn unique_exchange() -> String {
    format!("test-events-{}", Uuid::new_v4().simple())
}

/// A channel on a new connection to the test broker.
pub async fn amqp_channel() -> Channel {
    let url = test_amqp_url();
    let connect = Connection::connect(&url, ConnectionProperties::default());
    let connection = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .map_err(|_| "no answer within 5 s".to_owned())
        .and_then(|connected| connected.map_err(|e| e.to_string()))
        .unwrap_or_else(|e| {
            panic!("cannot connect to the test RabbitMQ ({e}); run scripts/test.sh")
        });
    connection.create_channel().await.expect("AMQP channel")
}

/// How many messages are ready in `queue` (0 if it does not exist yet).
pub async fn queue_depth(channel: &Channel, queue: &str) -> u32 {
    common::amqp::ready_messages(channel, queue)
        .await
        .unwrap_or_else(|e| panic!("queue {queue} cannot be inspected: {e}"))
}

/// A valid order message with a fresh id.
pub fn order_message(user: &str, items: &str, amount: &str) -> OrderMessage {
    let order = Order {
        user_id: UserId::parse(user).unwrap(),
        number_of_items: NumberOfItems::parse(items).unwrap(),
        total_amount: Amount::parse(amount).unwrap(),
    };
    OrderMessage::new(Uuid::new_v4(), order, chrono::Utc::now())
}

/// Every catalogue change event published to one exchange from now on, in arrival order, as a
/// subscriber sees it (a queue of its own, bound to every routing key).
#[cfg(feature = "messages")]
pub struct EventTap {
    consumer: lapin::Consumer,
    _channel: Channel,
}

#[cfg(feature = "messages")]
impl EventTap {
    pub async fn on(exchange: &str) -> Self {
        let channel = amqp_channel().await;
        let consumer =
            common::catalogue_event::subscribe_while_connected(&channel, exchange, "event-tap")
                .await
                .expect("subscribe the tap");
        Self {
            consumer,
            _channel: channel,
        }
    }

    /// The next event (its routing key, the event, its AMQP message id), or `None` if none
    /// arrives within `timeout`. Each is checked against asyncapi.yaml on the way.
    pub async fn next(
        &mut self,
        timeout: Duration,
    ) -> Option<(
        String,
        common::catalogue_event::CatalogueEvent,
        Option<String>,
    )> {
        use futures_util::StreamExt;
        let delivery = tokio::time::timeout(timeout, self.consumer.next())
            .await
            .ok()??
            .expect("a delivery");
        let amqp_type = delivery
            .properties
            .kind()
            .as_ref()
            .map(|kind| kind.as_str());
        crate::asyncapi::assert_documented(
            delivery.routing_key.as_str(),
            amqp_type,
            &delivery.data,
        );
        let event = common::catalogue_event::CatalogueEvent::from_amqp(
            &delivery.properties,
            &delivery.data,
        )
        .unwrap_or_else(|e| panic!("an event that does not decode: {e}"));
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.to_string());
        Some((delivery.routing_key.to_string(), event, message_id))
    }
}

/// A way to the test broker that the test can cut: a proxy to it, and the test broker's URL
/// through that proxy.
pub async fn broker_through_proxy() -> (crate::TcpProxy, String) {
    let url = test_amqp_url();
    let uri: lapin::uri::AMQPUri = url.parse().expect("TEST_AMQP_URL is an amqp:// URL");
    let (host, port) = (uri.authority.host.as_str(), uri.authority.port);
    let broker = tokio::net::lookup_host((host, port))
        .await
        .ok()
        .and_then(|mut addresses| addresses.next())
        .unwrap_or_else(|| panic!("TEST_AMQP_URL's host {host} does not resolve"));
    let proxy = crate::TcpProxy::start(broker).await;
    let through = url.replacen(&format!("{host}:{port}"), &proxy.addr().to_string(), 1);
    assert_ne!(through, url, "TEST_AMQP_URL names its port ({host}:{port})");
    (proxy, through)
}
