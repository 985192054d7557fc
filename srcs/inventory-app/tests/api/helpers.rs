use std::time::Duration;

use inventory_app::{configuration::Settings, startup::Application};
use serde_json::{json, Value};
use test_support::{inventory_database, inventory_settings, RunningApp, TestDatabase, ADMIN_TOKEN};

pub use test_support::assert_problem;

pub struct TestApp {
    pub address: String,
    pub db: TestDatabase,
    /// Sends the admin token with every request, as the gateway passes it on for writes.
    pub http: reqwest::Client,
    _app: RunningApp,
}

/// The real application on a free port, against a database of its own.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// [`spawn_app`] with its test settings adjusted first.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let db = inventory_database().await;
    let mut settings = inventory_settings(&db.url);
    adjust(&mut settings);
    let app = RunningApp::start::<Application>(settings).await;
    TestApp {
        address: app.address.clone(),
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
        _app: app,
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
