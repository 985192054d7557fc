use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_support::TcpProxy;

use crate::helpers::{
    assert_problem, gateway_settings, spawn_gateway, spawn_gateway_with, spawn_inventory,
};

#[tokio::test]
async fn an_order_is_confirmed_then_answered_202_and_the_message_matches() {
    let gateway = spawn_gateway().await;
    let response = gateway
        .http
        .post(gateway.url("/api/billing"))
        .header("x-request-id", "order-trace-1")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .json(&json!({"user_id": "88", "number_of_items": "2", "total_amount": "45.00"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["message"], "Order queued for processing");
    assert_eq!(body["status"], "queued");
    let order_id = body["order_id"].as_str().unwrap();

    let (envelope, properties) = gateway
        .next_message()
        .await
        .expect("the order is on the queue");
    let message = &envelope.message;
    assert_eq!(message.order_id.to_string(), order_id);
    assert_eq!(message.user_id.as_str(), "88");
    assert_eq!(message.number_of_items.get(), 2);
    assert_eq!(String::from(message.total_amount), "45.00");
    assert!(
        (chrono::Utc::now() - message.received_at)
            .num_seconds()
            .abs()
            < 10
    );
    assert_eq!(*properties.delivery_mode(), Some(2), "persistent");
    assert_eq!(
        properties.correlation_id().as_ref().unwrap().as_str(),
        "order-trace-1"
    );
    assert_eq!(
        properties.kind().as_ref().unwrap().as_str(),
        common::order::message::ORDER_MESSAGE_TYPE
    );
    assert_eq!(
        envelope.request_id.as_ref().map(|id| id.as_str()),
        Some("order-trace-1"),
        "billing reads the request id from the correlation id"
    );
    let headers = properties.headers().as_ref().unwrap().inner().clone();
    assert!(
        !headers.contains_key("x-request-id"),
        "the request id travels once, as the correlation id"
    );
    assert_eq!(
        envelope
            .traceparent
            .as_ref()
            .map(|context| context.as_str()),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    );
    assert!(gateway.next_message().await.is_none());
}

#[tokio::test]
async fn json_numbers_are_accepted_like_strings() {
    let gateway = spawn_gateway().await;
    let response = gateway
        .post_order(
            &json!({"user_id": 88, "number_of_items": 2, "total_amount": 45.5}),
            None,
        )
        .await;
    assert_eq!(response.status(), 202);
    let (envelope, _) = gateway.next_message().await.unwrap();
    assert_eq!(envelope.message.user_id.as_str(), "88");
    assert_eq!(String::from(envelope.message.total_amount), "45.50");
}

#[tokio::test]
async fn invalid_orders_get_field_errors_and_nothing_is_published() {
    let gateway = spawn_gateway().await;
    let cases = [
        (
            json!({"user_id": "", "number_of_items": "2", "total_amount": "45.00"}),
            vec!["user_id"],
        ),
        (
            json!({"user_id": "88", "number_of_items": 0, "total_amount": "45.00"}),
            vec!["number_of_items"],
        ),
        (
            json!({"user_id": "88", "number_of_items": "2", "total_amount": "45.000"}),
            vec!["total_amount"],
        ),
        (
            json!({"user_id": "88", "number_of_items": "2", "total_amount": "-1"}),
            vec!["total_amount"],
        ),
        (
            json!({"user_id": "88", "number_of_items": "2", "total_amount": "1e3"}),
            vec!["total_amount"],
        ),
        (
            json!({"user_id": "88", "number_of_items": "2", "total_amount": "45.00", "coupon": "x"}),
            vec!["coupon"],
        ),
        (
            json!({}),
            vec!["user_id", "number_of_items", "total_amount"],
        ),
    ];
    for (body, fields) in cases {
        let problem = assert_problem(gateway.post_order(&body, None).await, 400).await;
        let reported: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(reported, fields, "{body}");
    }
    let response = gateway
        .http
        .post(gateway.url("/api/billing"))
        .header("content-type", "text/plain")
        .body("user_id=88")
        .send()
        .await
        .unwrap();
    assert_problem(response, 415).await;
    let response = gateway
        .http
        .post(gateway.url("/api/billing"))
        .header("content-type", "application/json")
        .body("{\"user_id\": ")
        .send()
        .await
        .unwrap();
    assert_problem(response, 400).await;
    assert_eq!(gateway.queued().await, 0, "nothing was published");
}

#[tokio::test]
async fn the_same_idempotency_key_gives_the_same_order_id() {
    let gateway = spawn_gateway().await;
    let order = json!({"user_id": "88", "number_of_items": "2", "total_amount": "45.00"});
    let first: Value = gateway
        .post_order(&order, Some("key-123"))
        .await
        .json()
        .await
        .unwrap();
    let retry: Value = gateway
        .post_order(&order, Some("key-123"))
        .await
        .json()
        .await
        .unwrap();
    let other: Value = gateway
        .post_order(&order, Some("key-456"))
        .await
        .json()
        .await
        .unwrap();
    let no_key: Value = gateway.post_order(&order, None).await.json().await.unwrap();
    assert_eq!(first["order_id"], retry["order_id"]);
    assert_ne!(first["order_id"], other["order_id"]);
    assert_ne!(first["order_id"], no_key["order_id"]);
    let problem = assert_problem(
        gateway.post_order(&order, Some(&"k".repeat(300))).await,
        400,
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "Idempotency-Key");
}

#[tokio::test]
async fn broker_down_gives_a_quick_503_and_the_gateway_reconnects_on_its_own() {
    let inventory = spawn_inventory().await;
    let proxy = TcpProxy::start("127.0.0.1:5672".parse().unwrap()).await;
    let amqp_url =
        test_support::test_amqp_url().replace("127.0.0.1:5672", &proxy.addr().to_string());
    let queue = test_support::unique_queue();
    let (gateway, connected) =
        spawn_gateway_with(gateway_settings(inventory, &amqp_url, &queue)).await;
    assert!(connected);
    let order = json!({"user_id": "1", "number_of_items": 1, "total_amount": "1.00"});
    assert_eq!(gateway.post_order(&order, None).await.status(), 202);

    // Within the gateway's first connect timeout: a connection lost then is no reason to wait
    // (only a gateway that never connected waits for its first connection).
    proxy.cut();
    // Give the connection a moment to notice; every answer meanwhile is 202 (confirmed) or 503.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..5 {
        let started = Instant::now();
        let response = gateway.post_order(&order, None).await;
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "answered at once, not after waiting for a connection: {:?}",
            started.elapsed()
        );
        assert!(response.headers().contains_key("retry-after"));
        let problem = assert_problem(response, 503).await;
        assert!(problem["detail"].as_str().unwrap().contains("not queued"));
    }

    proxy.restore();
    test_support::eventually(
        Duration::from_secs(15),
        "the gateway queues orders again",
        || async { gateway.post_order(&order, None).await.status() == 202 },
    )
    .await;
    // Exactly the confirmed orders are on the queue: the first and the one after recovery.
    assert_eq!(gateway.queued().await, 2);
}

#[tokio::test]
async fn a_gateway_started_before_the_broker_is_ready_at_once_and_takes_orders_once_it_is_up() {
    let inventory = spawn_inventory().await;
    let proxy = TcpProxy::start("127.0.0.1:5672".parse().unwrap()).await;
    proxy.cut();
    let amqp_url =
        test_support::test_amqp_url().replace("127.0.0.1:5672", &proxy.addr().to_string());
    let queue = test_support::unique_queue();
    let mut settings = gateway_settings(inventory, &amqp_url, &queue);
    settings.amqp_connect_timeout = Duration::from_millis(500);
    let (gateway, connected) = spawn_gateway_with(settings).await;
    assert!(!connected);
    let order = json!({"user_id": "1", "number_of_items": 1, "total_amount": "1.00"});
    assert_problem(gateway.post_order(&order, None).await, 503).await;
    proxy.restore();
    test_support::eventually(Duration::from_secs(15), "orders are queued", || async {
        gateway.post_order(&order, None).await.status() == 202
    })
    .await;
}
