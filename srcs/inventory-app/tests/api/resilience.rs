use std::time::{Duration, Instant};

use serde_json::json;
use test_support::eventually;

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn a_database_outage_gives_quick_503s_and_the_service_recovers_on_its_own() {
    let app = spawn_app().await;
    app.create_movie("Before the outage").await;

    app.db.take_offline().await;
    let started = Instant::now();
    let problem = assert_problem(app.get("/api/movies").await, 503).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "503 came after {:?}",
        started.elapsed()
    );
    assert!(
        !problem.to_string().contains("SELECT"),
        "no SQL leaks: {problem}"
    );
    let response = app.post_movie(&json!({"title": "During"})).await;
    assert!(response.headers().contains_key("retry-after"));
    assert_problem(response, 503).await;

    app.db.bring_online().await;
    eventually(
        Duration::from_secs(10),
        "inventory answers again",
        || async { app.get("/api/movies").await.status() == 200 },
    )
    .await;
    app.create_movie("After the outage").await;
}
