use std::time::Duration;

use serde_json::{json, Value};
use test_support::{eventually, metric, TcpProxy};

use crate::helpers::{gateway_settings, spawn_gateway, spawn_gateway_with, spawn_inventory};

#[tokio::test]
async fn readiness_names_the_broker_and_inventory() {
    let inventory = spawn_inventory().await;
    let broker = TcpProxy::start("127.0.0.1:5672".parse().unwrap()).await;
    let catalogue = TcpProxy::start(inventory).await;
    let amqp_url =
        test_support::test_amqp_url().replace("127.0.0.1:5672", &broker.addr().to_string());
    let queue = test_support::unique_queue();
    let (gateway, connected) =
        spawn_gateway_with(gateway_settings(catalogue.addr(), &amqp_url, &queue)).await;
    assert!(connected);
    let ready = || async {
        let response = gateway.get("/ready").await;
        (
            response.status().as_u16(),
            response.json::<Value>().await.unwrap(),
        )
    };
    assert_eq!(
        ready().await,
        (
            200,
            json!({
                "status": "ready",
                "checks": {"broker": "up", "inventory": "up"},
                "connected_to": {"broker": broker.addr().to_string()},
            })
        )
    );

    // (Concurrent checks share one probe of inventory, whose result stands for a second.)
    catalogue.cut();
    eventually(
        Duration::from_secs(3),
        "not ready without inventory",
        || async {
            let (status, body) = ready().await;
            status == 503 && body["checks"] == json!({"broker": "up", "inventory": "down"})
        },
    )
    .await;
    catalogue.restore();

    broker.cut();
    eventually(
        Duration::from_secs(10),
        "not ready without the broker",
        || async { ready().await.1["checks"]["broker"] == "down" },
    )
    .await;
    let (_, body) = ready().await;
    assert!(
        body.get("connected_to").is_none(),
        "no node while none: {body}"
    );
    assert_eq!(gateway.get("/health").await.status(), 200);
    broker.restore();
    eventually(Duration::from_secs(15), "ready again", || async {
        ready().await.0 == 200
    })
    .await;
}

#[tokio::test]
async fn publish_and_request_metrics_count_known_traffic() {
    let gateway = spawn_gateway().await;
    let order = json!({"user_id": "1", "number_of_items": 1, "total_amount": "1.00"});
    for _ in 0..3 {
        let response = gateway.post_order(&order, None).await;
        assert_eq!(response.status(), 202);
        let order_id = response.headers()["location"].to_str().unwrap().to_owned();
        assert!(
            order_id.starts_with("/api/billing/"),
            "202 says where the order's status is"
        );
    }
    assert_eq!(gateway.post_order(&json!({}), None).await.status(), 400);
    assert_eq!(gateway.get("/api/movies").await.status(), 200);

    let scrape = gateway.get("/metrics").await.text().await.unwrap();
    assert_eq!(
        metric(
            &scrape,
            r#"gateway_orders_published_total{outcome="confirmed"}"#
        ),
        3.0
    );
    assert_eq!(
        metric(&scrape, "gateway_order_publish_duration_seconds_count"),
        3.0
    );
    assert_eq!(metric(&scrape, "gateway_broker_connected"), 1.0);
    let build = format!(
        r#"gateway_build_info{{build="{}",version="{}"}}"#,
        common::metrics::BUILD_ID,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(metric(&scrape, &build), 1.0);
    assert_eq!(
        metric(
            &scrape,
            r#"gateway_http_requests_total{method="POST",route="/api/billing",status="202"}"#
        ),
        3.0
    );
    assert_eq!(
        metric(
            &scrape,
            r#"gateway_http_requests_total{method="POST",route="/api/billing",status="400"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &scrape,
            r#"gateway_upstream_request_duration_seconds_count{upstream="inventory"}"#
        ),
        1.0
    );
    // The order status upstream is a closed port in these tests: one call, one error.
    let status = gateway
        .get("/api/billing/0b6b5a57-52c3-4a4b-8a0c-1b8e2f3f4e5d")
        .await;
    assert_eq!(status.status(), 502);
    let scrape = gateway.get("/metrics").await.text().await.unwrap();
    assert_eq!(
        metric(
            &scrape,
            r#"gateway_upstream_errors_total{kind="unreachable",upstream="billing"}"#
        ),
        1.0
    );
}
