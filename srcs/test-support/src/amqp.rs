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
