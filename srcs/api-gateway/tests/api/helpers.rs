use std::{net::SocketAddr, time::Duration};

use api_gateway::{configuration::Settings, startup::Application};
use common::{amqp::OrderQueue, order::message::OrderEnvelope};
use lapin::{
    options::{BasicAckOptions, BasicGetOptions},
    Channel,
};
use serde_json::Value;
use test_support::{
    amqp_channel, inventory_database, inventory_settings, test_amqp_url, unique_queue, RunningApp,
};

pub use test_support::{assert_problem, ADMIN_TOKEN};

pub struct TestGateway {
    pub address: String,
    pub queue: OrderQueue,
    pub channel: Channel,
    pub http: reqwest::Client,
}

/// A real inventory-app on a free port, against a database of its own.
pub async fn spawn_inventory() -> SocketAddr {
    let db = inventory_database().await;
    let inventory =
        RunningApp::start::<inventory_app::startup::Application>(inventory_settings(&db.url)).await;
    inventory.addr
}

/// A listener that accepts connections, holds them and never answers: a hung instance.
pub async fn hung_instance() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

/// The gateway's test settings in front of `inventory`, publishing to `queue` through
/// `amqp_url`. No billing-app in these tests: order status calls meet a closed port (502).
pub fn gateway_settings(inventory: SocketAddr, amqp_url: &str, queue: &OrderQueue) -> Settings {
    let mut settings =
        test_support::gateway_settings(&format!("http://{inventory}"), "http://127.0.0.1:9", queue);
    settings.brokers = amqp_url.parse().expect("an amqp:// URL");
    settings
}

/// The gateway in front of a fresh inventory and a fresh queue, connected to the broker.
pub async fn spawn_gateway() -> TestGateway {
    let (gateway, connected) = spawn_gateway_in_front_of(spawn_inventory().await).await;
    assert!(connected, "the gateway connects to the broker");
    gateway
}

/// The gateway in front of `inventory` (whatever listens there), publishing to a fresh queue;
/// and whether it connected to the broker within 5 s.
pub async fn spawn_gateway_in_front_of(inventory: SocketAddr) -> (TestGateway, bool) {
    let queue = unique_queue();
    spawn_gateway_with(gateway_settings(inventory, &test_amqp_url(), &queue)).await
}

/// Returns the gateway and whether it connected to the broker within 5 s (as `/ready` says:
/// the gateway serves before the broker answers).
pub async fn spawn_gateway_with(settings: Settings) -> (TestGateway, bool) {
    let queue = settings.queue.clone();
    let app = RunningApp::start::<Application>(settings).await;
    let gateway = TestGateway {
        address: app.address.clone(),
        queue,
        channel: amqp_channel().await,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
    };
    let connected = gateway
        .broker_connected_within(Duration::from_secs(5))
        .await;
    (gateway, connected)
}

impl TestGateway {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    async fn broker_connected_within(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let readiness: serde_json::Value = self.get("/ready").await.json().await.unwrap();
            if readiness["checks"]["broker"] == "up" {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    /// `POST /api/movies` with the admin token.
    pub async fn post_movie(&self, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url("/api/movies"))
            .bearer_auth(ADMIN_TOKEN)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_order(&self, body: &Value, key: Option<&str>) -> reqwest::Response {
        let mut request = self.http.post(self.url("/api/billing")).json(body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        request.send().await.unwrap()
    }

    /// Takes the next message off the order queue (acknowledging it), if there is one, decoded
    /// as billing decodes it.
    pub async fn next_message(&self) -> Option<(OrderEnvelope, lapin::BasicProperties)> {
        let message = self
            .channel
            .basic_get(self.queue.name().into(), BasicGetOptions::default())
            .await
            .expect("basic.get")?;
        message
            .delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .unwrap();
        let delivery = &message.delivery;
        let amqp_type = delivery
            .properties
            .kind()
            .as_ref()
            .map(|kind| kind.as_str());
        test_support::asyncapi::assert_documented(
            amqp_type.expect("an order message has a type"),
            amqp_type,
            &delivery.data,
        );
        let order = OrderEnvelope::from_amqp(&delivery.properties, &delivery.data)
            .expect("a valid order message");
        Some((order, delivery.properties.clone()))
    }

    pub async fn queued(&self) -> u32 {
        test_support::queue_depth(&self.channel, self.queue.name()).await
    }
}
