use std::{net::SocketAddr, time::Duration};

use api_gateway::{configuration::Settings, startup::Application};
use common::{
    amqp::OrderQueue,
    db::{build_pool, DatabaseSettings},
    order::OrderMessage,
};
use lapin::{
    options::{BasicAckOptions, BasicGetOptions},
    Channel,
};
use serde_json::Value;
use test_support::{amqp_channel, test_amqp_url, unique_queue, TestDatabase};

pub struct TestGateway {
    pub address: String,
    pub queue: OrderQueue,
    pub channel: Channel,
    pub http: reqwest::Client,
}

async fn migrate(url: String) {
    let pool = build_pool(&DatabaseSettings::with_url(&url).unwrap(), "gateway-tests");
    inventory_app::store::migrate(&pool)
        .await
        .expect("migrations apply");
    pool.close();
}

/// A real inventory-app on a free port, against a database of its own.
pub async fn spawn_inventory() -> SocketAddr {
    let db = TestDatabase::create(
        "inventory",
        &inventory_app::store::schema_fingerprint(),
        migrate,
    )
    .await;
    let settings = inventory_app::configuration::Settings {
        bind_addr: "127.0.0.1:0".parse().unwrap(),
        database: DatabaseSettings::with_url(&db.url).unwrap(),
        shutdown_timeout: Duration::from_secs(1),
        admin_token: ADMIN_TOKEN.parse().unwrap(),
    };
    let app = inventory_app::startup::Application::build(settings)
        .await
        .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], app.port()));
    tokio::spawn(app.run_until_stopped());
    addr
}

pub fn gateway_settings(inventory: SocketAddr, amqp_url: &str, queue: &OrderQueue) -> Settings {
    Settings {
        bind_addr: "127.0.0.1:0".parse().unwrap(),
        inventory_url: format!("http://{inventory}"),
        // No billing-app in these tests: order status calls meet a closed port (502).
        billing_url: "http://127.0.0.1:9".to_owned(),
        upstream_connect_timeout: Duration::from_millis(500),
        upstream_timeout: Duration::from_secs(2),
        amqp_url: amqp_url.to_owned(),
        queue: queue.clone(),
        amqp_connect_timeout: Duration::from_secs(2),
        publish_timeout: Duration::from_secs(2),
        shutdown_timeout: Duration::from_secs(1),
        admin_token: ADMIN_TOKEN.parse().unwrap(),
        // Tests send bursts; the rate limit has its own test.
        rate_limit: None,
    }
}

pub use test_support::ADMIN_TOKEN;

/// The gateway in front of a fresh inventory and a fresh queue, connected to the broker.
pub async fn spawn_gateway() -> TestGateway {
    let inventory = spawn_inventory().await;
    let queue = unique_queue();
    let gateway = spawn_gateway_with(gateway_settings(inventory, &test_amqp_url(), &queue)).await;
    assert!(gateway.1, "the gateway connects to the broker");
    gateway.0
}

/// Returns the gateway and whether it connected to the broker within 5 s.
pub async fn spawn_gateway_with(settings: Settings) -> (TestGateway, bool) {
    common::telemetry::init_logging();
    let queue = settings.queue.clone();
    let app = Application::build(settings).await.expect("gateway builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let connected = app.publisher().wait_connected(Duration::from_secs(5)).await;
    tokio::spawn(app.run_until_stopped());
    let channel = amqp_channel().await;
    let gateway = TestGateway {
        address,
        queue,
        channel,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
    };
    (gateway, connected)
}

impl TestGateway {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    pub async fn post_order(&self, body: &Value, key: Option<&str>) -> reqwest::Response {
        let mut request = self.http.post(self.url("/api/billing")).json(body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        request.send().await.unwrap()
    }

    /// Takes the next message off the order queue (acknowledging it), if there is one.
    pub async fn next_message(&self) -> Option<(OrderMessage, lapin::BasicProperties)> {
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
        let order =
            OrderMessage::from_json_bytes(&message.delivery.data).expect("a valid order message");
        Some((order, message.delivery.properties.clone()))
    }

    pub async fn queued(&self) -> u32 {
        test_support::queue_depth(&self.channel, self.queue.name()).await
    }
}

/// Asserts the shared error shape and returns the problem body.
pub async fn assert_problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status, "{body}");
    assert!(body["request_id"].is_string(), "{body}");
    body
}
