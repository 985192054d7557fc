use std::time::Duration;

use test_support::TcpProxy;

use crate::helpers::{order, TestBed};

fn broker_addr() -> std::net::SocketAddr {
    "127.0.0.1:5672".parse().unwrap()
}

/// The test broker URL with its host and port replaced by `addr`.
fn amqp_url_via(addr: std::net::SocketAddr) -> String {
    let url = test_support::test_amqp_url();
    url.replace("127.0.0.1:5672", &addr.to_string())
}

/// billing-app reaching the broker through a proxy the test can cut, with one order billed.
async fn billing_through_a_proxy(bed: &TestBed) -> (TcpProxy, test_support::RunningApp) {
    let proxy = TcpProxy::start(broker_addr()).await;
    let billing = bed
        .start_billing_with(bed.settings(&amqp_url_via(proxy.addr())))
        .await;
    bed.publish(&order("1", "1", "1.00"), "req-1").await;
    bed.wait_for_rows(1).await;
    (proxy, billing)
}

#[tokio::test]
async fn a_database_outage_holds_orders_until_the_database_is_back() {
    let bed = TestBed::new().await;
    let billing = bed.start_billing().await;
    bed.publish(&order("1", "1", "1.00"), "req-before").await;
    bed.wait_for_rows(1).await;

    bed.db.take_offline().await;
    for i in 0..20 {
        bed.publish(&order(&i.to_string(), "1", "1.00"), "req-during")
            .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        bed.ready_messages(bed.queue.name()).await,
        0,
        "delivered to billing, held unacknowledged"
    );

    bed.db.bring_online().await;
    bed.wait_for_rows(21).await;
    billing.stop().await;
    assert_eq!(bed.ready_messages(bed.queue.name()).await, 0);
}

#[tokio::test]
async fn a_lost_broker_connection_is_re_established_without_a_restart() {
    let bed = TestBed::new().await;
    let (proxy, billing) = billing_through_a_proxy(&bed).await;

    proxy.cut();
    // Published to the real broker while billing cannot reach it.
    for i in 0..30 {
        bed.publish(&order(&i.to_string(), "2", "5.00"), "req-outage")
            .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(bed.rows().await, 1);
    proxy.restore();
    bed.wait_for_rows(31).await;
    billing.stop().await;
}

#[tokio::test]
async fn billing_starts_while_the_broker_is_down_and_consumes_once_it_is_up() {
    let bed = TestBed::new().await;
    let proxy = TcpProxy::start(broker_addr()).await;
    proxy.cut();
    let billing = bed
        .start_billing_with(bed.settings(&amqp_url_via(proxy.addr())))
        .await;
    bed.publish(&order("1", "1", "1.00"), "req-early").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.restore();
    bed.wait_for_rows(1).await;
    billing.stop().await;
}

/// The longest a stop may take in the tests (their `SHUTDOWN_TIMEOUT_MS` is 5 s).
const STOP_WITHIN: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_stop_while_the_database_is_down_ends_in_bounded_time_and_loses_nothing() {
    let bed = TestBed::new().await;
    let billing = bed.start_billing().await;
    bed.db.take_offline().await;
    for i in 0..20 {
        bed.publish(&order(&i.to_string(), "1", "1.00"), "req-held")
            .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::time::timeout(STOP_WITHIN, billing.stop())
        .await
        .expect("stopped while holding orders for a database that is down");
    assert_eq!(
        bed.ready_messages(bed.queue.name()).await,
        20,
        "the held orders went back to the queue"
    );
    bed.db.bring_online().await;
    let billing = bed.start_billing().await;
    bed.wait_for_rows(20).await;
    billing.stop().await;
}

#[tokio::test]
async fn a_stop_while_reconnecting_to_a_lost_broker_ends_in_bounded_time() {
    let bed = TestBed::new().await;
    let (proxy, billing) = billing_through_a_proxy(&bed).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let ready = reqwest::get(billing.url("/ready")).await.unwrap();
    assert_eq!(ready.status(), 503, "not ready while it has no consumer");
    tokio::time::timeout(STOP_WITHIN, billing.stop())
        .await
        .expect("stopped while reconnecting");
}

#[tokio::test]
async fn with_several_broker_nodes_billing_moves_to_the_next_when_its_node_is_lost() {
    let bed = TestBed::new().await;
    // Two "nodes": two ways to the one test broker, each cuttable on its own.
    let (preferred, other) = (
        TcpProxy::start(broker_addr()).await,
        TcpProxy::start(broker_addr()).await,
    );
    let amqp_url = format!(
        "{},{}",
        amqp_url_via(preferred.addr()),
        amqp_url_via(other.addr())
    );
    let billing = bed.start_billing_with(bed.settings(&amqp_url)).await;
    let http = reqwest::Client::new();
    let connected_to = || async {
        let ready = test_support::get_json(&http, billing.url("/ready")).await;
        ready["connected_to"]["broker"].as_str().map(str::to_owned)
    };
    let preferred_node = preferred.addr().to_string();
    test_support::eventually(
        Duration::from_secs(10),
        "consuming from the first node",
        || async { connected_to().await.as_deref() == Some(preferred_node.as_str()) },
    )
    .await;

    preferred.cut();
    let other_node = other.addr().to_string();
    test_support::eventually(
        Duration::from_secs(15),
        "consuming from the second node",
        || async { connected_to().await.as_deref() == Some(other_node.as_str()) },
    )
    .await;
    for i in 0..20 {
        bed.publish(&order(&i.to_string(), "1", "1.00"), "req-failover")
            .await;
    }
    bed.wait_for_rows(20).await;
    let metrics = test_support::get_text(&http, billing.url("/metrics")).await;
    let gauge = |node: &str| {
        test_support::metric(
            &metrics,
            &format!("billing_broker_node_connected{{node=\"{node}\"}}"),
        )
    };
    assert_eq!((gauge(&preferred_node), gauge(&other_node)), (0.0, 1.0));
    billing.stop().await;
}
