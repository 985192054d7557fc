use std::time::Duration;

use lapin::BasicProperties;
use serde_json::Value;
use test_support::{eventually, metric, TcpProxy};

use crate::helpers::{order, TestBed};

#[tokio::test]
async fn order_status_goes_from_404_to_200_once_billed() {
    let bed = TestBed::new().await;
    let billing = bed.start_billing().await;
    let http = reqwest::Client::new();
    let the_order = order("88", "2", "45.00");
    let url = billing.url(&format!("/api/billing/{}", the_order.order_id));

    let before = http.get(&url).send().await.unwrap();
    assert_eq!(before.status(), 404);
    assert_eq!(before.headers()["content-type"], "application/problem+json");
    assert_eq!(
        before.headers()["cache-control"],
        "no-store",
        "not billed yet: for now"
    );

    bed.publish(&the_order, "req-status").await;
    eventually(Duration::from_secs(10), "the order is billed", || async {
        http.get(&url).send().await.unwrap().status() == 200
    })
    .await;
    let answer = http.get(&url).send().await.unwrap();
    assert_eq!(
        answer.headers()["cache-control"],
        "no-store",
        "one user's order"
    );
    let billed: Value = answer.json().await.unwrap();
    assert_eq!(billed["order_id"], the_order.order_id.to_string());
    assert_eq!(billed["status"], "billed");
    assert_eq!(billed["user_id"], "88");
    assert_eq!(billed["number_of_items"], 2);
    assert_eq!(billed["total_amount"], "45.00");
    assert!(billed["processed_at"].is_string() && billed["received_at"].is_string());

    let bad = http
        .get(billing.url("/api/billing/not-a-uuid"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    billing.stop().await;
}

#[tokio::test]
async fn consumer_metrics_count_known_traffic() {
    let bed = TestBed::new().await;
    let billing = bed.start_billing().await;
    let duplicated = order("1", "1", "1.00");
    for i in 0..5 {
        bed.publish(&order(&i.to_string(), "1", "2.00"), "req-metrics")
            .await;
    }
    bed.publish(&duplicated, "req-dup").await;
    bed.publish(&duplicated, "req-dup").await;
    let json = BasicProperties::default().with_content_type("application/json".into());
    bed.publish_raw(b"garbage", json.clone()).await;
    bed.publish_raw(b"{}", json).await;
    bed.wait_for_rows(6).await;

    let http = reqwest::Client::new();
    let scrape_until = |expected_dead: f64| {
        let (http, url) = (http.clone(), billing.url("/metrics"));
        async move {
            let mut scrape = String::new();
            for _ in 0..100 {
                scrape = http.get(&url).send().await.unwrap().text().await.unwrap();
                if metric(&scrape, "billing_messages_dead_lettered_total") >= expected_dead
                    && metric(&scrape, "billing_messages_acked_total") >= 7.0
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            scrape
        }
    };
    let scrape = scrape_until(2.0).await;
    assert_eq!(metric(&scrape, "billing_messages_received_total"), 9.0);
    assert_eq!(metric(&scrape, "billing_messages_acked_total"), 7.0);
    assert_eq!(metric(&scrape, "billing_messages_dead_lettered_total"), 2.0);
    assert_eq!(metric(&scrape, "billing_orders_billed_total"), 6.0);
    assert_eq!(metric(&scrape, "billing_orders_duplicate_total"), 1.0);
    assert_eq!(metric(&scrape, "billing_consumer_connected"), 1.0);
    assert!(metric(&scrape, "billing_batch_processing_duration_seconds_count") >= 1.0);
    assert!(scrape.contains("billing_queue_backlog_messages"));
    billing.stop().await;
}

#[tokio::test]
async fn readiness_names_the_database_and_the_broker() {
    let bed = TestBed::new().await;
    let proxy = TcpProxy::start("127.0.0.1:5672".parse().unwrap()).await;
    let amqp_url =
        test_support::test_amqp_url().replace("127.0.0.1:5672", &proxy.addr().to_string());
    let billing = bed.start_billing_with(bed.settings(&amqp_url)).await;
    let http = reqwest::Client::new();
    let ready = || {
        let (http, url) = (http.clone(), billing.url("/ready"));
        async move {
            let response = http.get(&url).send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    eventually(Duration::from_secs(10), "ready", || async {
        ready().await.0 == 200
    })
    .await;

    proxy.cut();
    eventually(
        Duration::from_secs(10),
        "not ready without the broker",
        || async {
            let (status, body) = ready().await;
            status == 503
                && body["checks"]["broker"] == "down"
                && body["checks"]["database"] == "up"
        },
    )
    .await;
    proxy.restore();
    eventually(Duration::from_secs(15), "ready again", || async {
        ready().await.0 == 200
    })
    .await;

    bed.db.take_offline().await;
    let (status, body) = ready().await;
    assert_eq!(status, 503);
    assert_eq!(body["checks"]["database"], "down");
    let live = http.get(billing.url("/health")).send().await.unwrap();
    assert_eq!(live.status(), 200);
    bed.db.bring_online().await;
    eventually(
        Duration::from_secs(10),
        "ready once the database is back",
        || async { ready().await.0 == 200 },
    )
    .await;
    billing.stop().await;
}
