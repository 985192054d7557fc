use std::time::Duration;

use common::db::{build_pool, DatabaseSettings};
use inventory_app::{configuration::Settings, startup::Application, store};
use serde_json::{json, Value};
use test_support::{TestDatabase, ADMIN_TOKEN};

pub struct TestApp {
    pub address: String,
    pub db: TestDatabase,
    /// Sends the admin token with every request, as the gateway passes it on for writes.
    pub http: reqwest::Client,
}

/// Migrates `url` with the service's own migration code (for the template database).
async fn migrate(url: String) {
    let pool = build_pool(
        &DatabaseSettings::with_url(&url).unwrap(),
        "inventory-tests",
    );
    store::migrate(&pool).await.expect("migrations apply");
    pool.close();
}

/// The real application on a free port, against a database of its own.
pub async fn spawn_app() -> TestApp {
    common::telemetry::init_logging();
    let db = TestDatabase::create("inventory", &store::schema_fingerprint(), migrate).await;
    let mut database = DatabaseSettings::with_url(&db.url).unwrap();
    database.pool_timeout = Duration::from_millis(500);
    let settings = Settings {
        bind_addr: "127.0.0.1:0".parse().unwrap(),
        database,
        shutdown_timeout: Duration::from_secs(1),
        admin_token: ADMIN_TOKEN.parse().unwrap(),
    };
    let app = Application::build(settings)
        .await
        .expect("application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        db,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .default_headers(
                [(
                    reqwest::header::AUTHORIZATION,
                    format!("Bearer {ADMIN_TOKEN}").parse().unwrap(),
                )]
                .into_iter()
                .collect(),
            )
            .build()
            .unwrap(),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn post_movie(&self, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url("/api/movies"))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Creates a movie and returns its JSON.
    pub async fn create_movie(&self, title: &str) -> Value {
        let response = self.post_movie(&json!({ "title": title })).await;
        assert_eq!(response.status(), 201, "creating {title}");
        response.json().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }
}

/// Asserts the shared error shape and returns the problem body.
pub async fn assert_problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "errors are problem+json"
    );
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(
        body["title"].is_string() && body["type"].is_string(),
        "{body}"
    );
    assert!(
        body["request_id"].is_string(),
        "problem carries the request id: {body}"
    );
    body
}
