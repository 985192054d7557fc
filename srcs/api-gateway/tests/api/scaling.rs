//! Several instances behind the gateway: broker nodes and inventory instances.

use std::time::Duration;

use serde_json::json;
use test_support::{eventually, get_json, metric, TcpProxy};

use crate::helpers::{gateway_settings, hung_instance, spawn_gateway_with, spawn_inventory};

/// The test broker reached through `proxy`.
fn via(proxy: &TcpProxy) -> String {
    test_support::test_amqp_url().replace("127.0.0.1:5672", &proxy.addr().to_string())
}

#[tokio::test]
async fn with_several_broker_nodes_orders_move_to_the_next_node_when_one_is_lost() {
    let inventory = spawn_inventory().await;
    // Two "nodes": two ways to the one test broker, each cuttable on its own.
    let broker: std::net::SocketAddr = "127.0.0.1:5672".parse().unwrap();
    let (preferred, other) = (TcpProxy::start(broker).await, TcpProxy::start(broker).await);
    let queue = test_support::unique_queue();
    let amqp_url = format!("{},{}", via(&preferred), via(&other));
    let (gateway, connected) =
        spawn_gateway_with(gateway_settings(inventory, &amqp_url, &queue)).await;
    assert!(connected);
    let connected_to = || async {
        let ready = get_json(&gateway.http, gateway.url("/ready")).await;
        ready["connected_to"]["broker"].as_str().map(str::to_owned)
    };
    assert_eq!(connected_to().await, Some(preferred.addr().to_string()));

    preferred.cut();
    let order = json!({"user_id": "1", "number_of_items": 1, "total_amount": "1.00"});
    let confirmed = std::cell::Cell::new(0);
    eventually(
        Duration::from_secs(15),
        "orders are confirmed through the other node",
        || async {
            // Meanwhile every answer is 202 (confirmed) or a quick 503, never anything else.
            let status = gateway.post_order(&order, None).await.status();
            assert!(status == 202 || status == 503, "{status}");
            confirmed.set(confirmed.get() + usize::from(status == 202));
            status == 202
        },
    )
    .await;
    assert_eq!(connected_to().await, Some(other.addr().to_string()));
    let scrape = gateway
        .http
        .get(gateway.url("/metrics"))
        .send()
        .await
        .unwrap();
    let scrape = scrape.text().await.unwrap();
    let gauge = |proxy: &TcpProxy| {
        let series = format!("gateway_broker_node_connected{{node=\"{}\"}}", proxy.addr());
        metric(&scrape, &series)
    };
    assert_eq!((gauge(&preferred), gauge(&other)), (0.0, 1.0));
    assert_eq!(
        gateway.queued().await as usize,
        confirmed.get(),
        "every 202 is on the queue"
    );
}

#[tokio::test]
async fn with_two_inventories_reads_and_writes_fail_over_from_one_that_is_down() {
    let live = spawn_inventory().await;
    // A port nothing listens on: an instance that is down.
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let settings = in_front_of_two_inventories(down, live);
    let (gateway, connected) = spawn_gateway_with(settings).await;
    assert!(connected);

    // Writes too: a request that never reached an instance is safe to send to another.
    let created = gateway.post_movie(&json!({"title": "Shared"})).await;
    assert_eq!(created.status(), 201);
    // One after another: this is about which instance answers, not about load.
    for _ in 0..100 {
        assert_eq!(gateway.get("/api/movies").await.status(), 200);
    }
    let ready = get_json(&gateway.http, gateway.url("/ready")).await;
    assert_eq!(
        ready["checks"]["inventory"], "up",
        "one instance is enough: {ready}"
    );
    let scrape = gateway.get("/metrics").await.text().await.unwrap();
    let breaker = |addr: std::net::SocketAddr| {
        let series =
            format!("gateway_circuit_breaker_state{{target=\"{addr}\",upstream=\"inventory\"}}");
        metric(&scrape, &series)
    };
    assert_eq!(
        (breaker(down), breaker(live)),
        (1.0, 0.0),
        "the down instance's circuit opened, the live one's did not"
    );
}

/// A listener whose accept queue is full: further connection attempts get no answer at all, as
/// from a machine that is off or a firewall that drops.
fn silent_listener() -> (
    tokio::net::TcpListener,
    Vec<std::net::TcpStream>,
    std::net::SocketAddr,
) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let fillers = (0..8)
        .map_while(|_| std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok())
        .collect();
    (listener, fillers, addr)
}

#[tokio::test]
async fn an_instance_that_never_answers_a_connection_is_passed_over_too() {
    let live = spawn_inventory().await;
    let (_listener, _fillers, silent) = silent_listener();
    let settings = in_front_of_two_inventories(silent, live);
    let (gateway, connected) = spawn_gateway_with(settings).await;
    assert!(connected);
    let created = gateway
        .post_movie(&json!({"title": "Behind a silent instance"}))
        .await;
    assert_eq!(created.status(), 201, "a write never sent may go elsewhere");
    // Through the circuit's opening and at least one probe of the silent instance (2 s).
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        assert_eq!(gateway.get("/api/movies").await.status(), 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An instance that takes requests and never answers (hung, or a machine gone with the
/// connections still pooled): reads that timed out on it are answered by the other instance,
/// through the circuit's opening and its probes.
#[tokio::test]
async fn a_read_that_times_out_on_a_hung_instance_is_answered_by_another() {
    let live = spawn_inventory().await;
    let hung = hung_instance().await;
    let mut settings = in_front_of_two_inventories(hung, live);
    settings.upstream.request_timeout = Duration::from_millis(300);
    let (gateway, connected) = spawn_gateway_with(settings).await;
    assert!(connected);
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        assert_eq!(gateway.get("/api/movies").await.status(), 200);
    }
    // A write that timed out may have been done: it is not sent again, to the live instance.
    let created = gateway.post_movie(&json!({"title": "Not twice"})).await;
    let listed = get_json(&gateway.http, gateway.url("/api/movies?q=not%20twice")).await;
    match created.status().as_u16() {
        201 => assert_eq!(listed["movies"].as_array().unwrap().len(), 1, "{listed}"),
        504 => assert_eq!(listed["movies"].as_array().unwrap().len(), 0, "{listed}"),
        other => panic!("a write through a hung instance answered {other}"),
    }
}

/// Under load, a hung instance's slots are all taken: the requests waiting for one go on to the
/// other instance when their wait ends, instead of getting 503.
#[tokio::test]
async fn requests_waiting_for_a_hung_instance_go_on_to_another() {
    let live = spawn_inventory().await;
    let hung = hung_instance().await;
    let mut settings = in_front_of_two_inventories(hung, live);
    settings.upstream.max_connections = 2;
    settings.upstream.queue_timeout = Duration::from_millis(200);
    settings.upstream.request_timeout = Duration::from_millis(1000);
    let (gateway, connected) = spawn_gateway_with(settings).await;
    assert!(connected);
    let reads = (0..12).map(|_| gateway.get("/api/movies"));
    let statuses: Vec<u16> = futures_util::future::join_all(reads)
        .await
        .iter()
        .map(|response| response.status().as_u16())
        .collect();
    assert_eq!(statuses, [200; 12]);
}

/// The gateway's test settings with two inventory instances, `first` listed first.
fn in_front_of_two_inventories(
    first: std::net::SocketAddr,
    live: std::net::SocketAddr,
) -> api_gateway::configuration::Settings {
    let queue = test_support::unique_queue();
    let mut settings = gateway_settings(live, &test_support::test_amqp_url(), &queue);
    settings.inventory_urls = vec![format!("http://{first}"), format!("http://{live}")];
    // Every read must reach an instance: no cache in front of them.
    settings.cache = None;
    settings
}
