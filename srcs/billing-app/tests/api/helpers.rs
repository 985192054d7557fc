use std::time::Duration;

use billing_app::{configuration::Settings, startup::Application, store};
use chrono::Utc;
use common::{
    amqp::{order_properties, OrderQueue},
    db::{build_pool, DatabaseSettings},
    order::{Amount, NumberOfItems, OrderMessage, OrderRequest, UserId},
};
use lapin::{options::BasicPublishOptions, BasicProperties, Channel};
use test_support::{amqp_channel, eventually, unique_queue, TestDatabase};
use tokio::{sync::oneshot, task::JoinHandle};
use uuid::Uuid;

async fn migrate(url: String) {
    let pool = build_pool(&DatabaseSettings::with_url(&url).unwrap(), "billing-tests");
    store::migrate(&pool).await.expect("migrations apply");
    pool.close();
}

/// A queue and database of the test's own, and a channel to publish with.
pub struct TestBed {
    pub db: TestDatabase,
    pub queue: OrderQueue,
    pub channel: Channel,
}

/// A running billing-app; `stop` shuts it down as SIGTERM would.
pub struct RunningBilling {
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<()>,
    port: u16,
}

impl RunningBilling {
    /// A URL on billing-app's HTTP listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(20), self.handle)
            .await
            .expect("billing-app stops within 20 s")
            .expect("billing-app task ends cleanly");
    }
}

impl TestBed {
    pub async fn new() -> Self {
        common::telemetry::init_logging();
        let db = TestDatabase::create("billing", &store::schema_fingerprint(), migrate).await;
        let queue = unique_queue();
        let channel = amqp_channel().await;
        channel
            .confirm_select(Default::default())
            .await
            .expect("confirm mode");
        queue.declare(&channel).await.expect("declare topology");
        Self { db, queue, channel }
    }

    pub fn settings(&self, amqp_url: &str) -> Settings {
        let mut database = DatabaseSettings::with_url(&self.db.url).unwrap();
        database.pool_timeout = Duration::from_millis(500);
        Settings {
            http_bind_addr: "127.0.0.1:0".parse().unwrap(),
            database,
            amqp_url: amqp_url.to_owned(),
            queue: self.queue.clone(),
            prefetch: 100,
            batch_size: 50,
            batch_linger: Duration::from_millis(5),
            connect_timeout: Duration::from_secs(2),
            shutdown_timeout: Duration::from_secs(5),
        }
    }

    pub async fn start_billing(&self) -> RunningBilling {
        self.start_billing_with(self.settings(&test_support::test_amqp_url()))
            .await
    }

    pub async fn start_billing_with(&self, settings: Settings) -> RunningBilling {
        let app = Application::build(settings)
            .await
            .expect("billing-app builds");
        let port = app.port();
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        RunningBilling {
            stop: Some(stop),
            handle,
            port,
        }
    }

    /// Publishes and waits for the broker's confirmation.
    pub async fn publish_raw(&self, body: &[u8], properties: BasicProperties) {
        let confirm = self
            .channel
            .basic_publish(
                "".into(),
                self.queue.name().into(),
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
        self.publish_raw(
            &order.to_json_bytes(),
            order_properties(order, Some(request_id), None),
        )
        .await;
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
}

/// A valid order with a fresh id.
pub fn order(user: &str, items: &str, amount: &str) -> OrderMessage {
    let request = OrderRequest {
        user_id: UserId::parse(user).unwrap(),
        number_of_items: NumberOfItems::parse(items).unwrap(),
        total_amount: Amount::parse(amount).unwrap(),
    };
    OrderMessage::new(Uuid::new_v4(), request, Utc::now())
}
