use std::time::Duration;

use serde_json::{json, Value};
use test_support::{eventually, metric};

use crate::helpers::spawn_app;

#[tokio::test]
async fn readiness_follows_the_database_while_liveness_does_not() {
    let app = spawn_app().await;
    let ready = app.get("/ready").await;
    assert_eq!(ready.status(), 200);
    assert_eq!(
        ready.json::<Value>().await.unwrap(),
        json!({"status": "ready", "checks": {"database": "up"}})
    );

    app.db.take_offline().await;
    let ready = app.get("/ready").await;
    assert_eq!(ready.status(), 503);
    assert_eq!(
        ready.json::<Value>().await.unwrap()["checks"]["database"],
        "down"
    );
    assert_eq!(
        app.get("/health").await.status(),
        200,
        "liveness never depends on the database"
    );

    app.db.bring_online().await;
    eventually(Duration::from_secs(10), "ready again", || async {
        app.get("/ready").await.status() == 200
    })
    .await;
}

#[tokio::test]
async fn request_metrics_count_known_traffic_by_route_method_and_status() {
    let app = spawn_app().await;
    for title in ["A", "B", "C"] {
        app.create_movie(title).await;
    }
    assert_eq!(app.get("/api/movies/424242").await.status(), 404);
    assert_eq!(app.get("/api/movies/424243").await.status(), 404);
    assert_eq!(app.get("/api/movies?limit=0").await.status(), 400);

    let scrape = app.get("/metrics").await;
    assert!(scrape.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let scrape = scrape.text().await.unwrap();
    let requests = |method: &str, route: &str, status: u16| {
        metric(
            &scrape,
            &format!(
                r#"inventory_http_requests_total{{method="{method}",route="{route}",status="{status}"}}"#
            ),
        )
    };
    assert_eq!(requests("POST", "/api/movies", 201), 3.0);
    assert_eq!(
        requests("GET", "/api/movies/{id}", 404),
        2.0,
        "ids do not become labels"
    );
    assert_eq!(requests("GET", "/api/movies", 400), 1.0);
    assert_eq!(
        metric(
            &scrape,
            r#"inventory_http_request_duration_seconds_count{method="POST",route="/api/movies"}"#
        ),
        3.0
    );
    assert!(
        metric(&scrape, "inventory_db_pool_connections") >= 1.0,
        "pool gauges are refreshed at scrape"
    );
    assert!(scrape.contains("inventory_db_pool_waiting"));
    assert!(metric(&scrape, "inventory_process_resident_memory_bytes") > 0.0);
}
