//! The catalogue cache: hits, what invalidates it (change events, the gateway's own writes),
//! what it never keeps, and how stale it can be while the events do not arrive.

use std::{net::SocketAddr, time::Duration};

use serde_json::{json, Value};
use test_support::{
    eventually, inventory_database, inventory_settings, metric, unique_exchange, unique_queue,
    RunningApp, ADMIN_TOKEN,
};

use crate::helpers::{gateway_settings, spawn_gateway_with, TestGateway};

/// An inventory publishing its change events to `exchange`.
async fn spawn_inventory_publishing_to(exchange: &str) -> SocketAddr {
    let db = inventory_database().await;
    let mut settings = inventory_settings(&db.url);
    settings.events.exchange = exchange.to_owned();
    RunningApp::start::<inventory_app::startup::Application>(settings)
        .await
        .addr
}

/// A gateway in front of `inventory` whose cache listens to `exchange` (through `amqp_url`)
/// and keeps answers for `ttl`.
async fn spawn_caching_gateway(
    inventory: SocketAddr,
    amqp_url: &str,
    exchange: &str,
    ttl: Duration,
) -> TestGateway {
    let mut settings = gateway_settings(inventory, amqp_url, &unique_queue());
    let cache = settings.cache.as_mut().expect("the cache is on by default");
    cache.exchange = exchange.to_owned();
    cache.ttl = ttl;
    let (gateway, _) = spawn_gateway_with(settings).await;
    eventually(
        Duration::from_secs(10),
        "the gateway to subscribe",
        || async {
            metric(
                &scrape(&gateway).await,
                "gateway_catalogue_events_subscribed",
            ) == 1.0
        },
    )
    .await;
    gateway
}

/// A caching gateway in front of an inventory behind a proxy that can hold its answers.
async fn caching_gateway_before_a_slow_inventory() -> (test_support::TcpProxy, TestGateway) {
    let exchange = unique_exchange();
    let inventory = spawn_inventory_publishing_to(&exchange).await;
    let slow_inventory = test_support::TcpProxy::start(inventory).await;
    let gateway = spawn_caching_gateway(
        slow_inventory.addr(),
        &test_support::test_amqp_url(),
        &exchange,
        Duration::from_secs(60),
    )
    .await;
    (slow_inventory, gateway)
}

/// How many requests the gateway has sent inventory.
async fn asked_inventory(gateway: &TestGateway) -> f64 {
    metric(
        &scrape(gateway).await,
        r#"gateway_upstream_request_duration_seconds_count{upstream="inventory"}"#,
    )
}

/// Cuts the gateway's way to the broker and waits until it knows it no longer hears events.
async fn lose_the_events(broker: &test_support::TcpProxy, gateway: &TestGateway) {
    broker.cut();
    eventually(Duration::from_secs(10), "the gateway to notice", || async {
        metric(
            &scrape(gateway).await,
            "gateway_catalogue_events_subscribed",
        ) == 0.0
    })
    .await;
}

async fn scrape(gateway: &TestGateway) -> String {
    gateway.get("/metrics").await.text().await.unwrap()
}

async fn lookups(gateway: &TestGateway, result: &str) -> f64 {
    let series = format!("gateway_catalogue_cache_lookups_total{{result=\"{result}\"}}");
    metric(&scrape(gateway).await, &series)
}

/// Writes straight to inventory, behind the gateway's back.
async fn put_behind(inventory: SocketAddr, id: i64, title: &str) {
    let response = reqwest::Client::new()
        .put(format!("http://{inventory}/api/movies/{id}"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "title": title }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn title_of(gateway: &TestGateway, path: &str) -> String {
    let movie: Value = gateway.get(path).await.json().await.unwrap();
    movie["title"].as_str().unwrap().to_owned()
}

async fn create(gateway: &TestGateway, title: &str) -> i64 {
    let created = gateway.post_movie(&json!({ "title": title })).await;
    assert_eq!(created.status(), 201);
    created.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn reads_are_served_from_the_cache_until_an_event_says_the_catalogue_changed() {
    let exchange = unique_exchange();
    let inventory = spawn_inventory_publishing_to(&exchange).await;
    let ttl = Duration::from_secs(300);
    let gateway =
        spawn_caching_gateway(inventory, &test_support::test_amqp_url(), &exchange, ttl).await;
    let id = create(&gateway, "Alien").await;
    let path = format!("/api/movies/{id}");
    // The creation's own event comes after the answer, and would invalidate a first read.
    eventually(Duration::from_secs(5), "the creation's event", || async {
        let series = "gateway_catalogue_events_received_total{type=\"movie.created\"}";
        metric(&scrape(&gateway).await, series) == 1.0
    })
    .await;

    let first = gateway.get(&path).await;
    let etag = first.headers()["etag"].clone();
    let body = first.bytes().await.unwrap();
    let hits = lookups(&gateway, "hit").await;
    let again = gateway.get(&path).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["etag"], etag);
    assert_eq!(again.headers()["cache-control"], "public, no-cache");
    assert_eq!(again.bytes().await.unwrap(), body);
    // Revalidation and HEAD are answered from the cache too.
    let revalidated = gateway
        .http
        .get(gateway.url(&path))
        .header("if-none-match", etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), 304);
    assert_eq!(revalidated.headers()["etag"], etag);
    let head = gateway.http.head(gateway.url(&path)).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        body.len().to_string().as_str()
    );
    assert_eq!(lookups(&gateway, "hit").await, hits + 3.0);

    // A change behind the gateway's back reaches it as an event, long before the TTL.
    gateway.get("/api/movies").await;
    put_behind(inventory, id, "Aliens").await;
    eventually(
        Duration::from_secs(5),
        "the event to invalidate the movie",
        || async { title_of(&gateway, &path).await == "Aliens" },
    )
    .await;
    let page: Value = gateway.get("/api/movies").await.json().await.unwrap();
    assert_eq!(
        page["movies"][0]["title"], "Aliens",
        "list pages are invalidated too"
    );
    let scrape = scrape(&gateway).await;
    assert!(metric(&scrape, "gateway_catalogue_cache_invalidations_total") >= 1.0);
    assert!(
        metric(
            &scrape,
            "gateway_catalogue_events_received_total{type=\"movie.replaced\"}"
        ) >= 1.0
    );
    assert!(metric(&scrape, "gateway_catalogue_cache_entries") >= 1.0);
    assert!(metric(&scrape, "gateway_catalogue_cache_bytes") > body.len() as f64);
}

#[tokio::test]
async fn a_write_through_the_gateway_is_read_back_at_once_even_without_events() {
    // The gateway listens to an exchange nobody publishes to: only its own writes invalidate.
    let inventory = spawn_inventory_publishing_to(&unique_exchange()).await;
    let gateway = spawn_caching_gateway(
        inventory,
        &test_support::test_amqp_url(),
        &unique_exchange(),
        Duration::from_secs(300),
    )
    .await;
    let id = create(&gateway, "Heat").await;
    let path = format!("/api/movies/{id}");
    assert_eq!(title_of(&gateway, &path).await, "Heat");
    gateway.get("/api/movies").await;
    let replaced = gateway
        .http
        .put(gateway.url(&path))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "title": "Heat (1995)" }))
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.status(), 200);
    assert_eq!(title_of(&gateway, &path).await, "Heat (1995)");
    let created = create(&gateway, "Ran").await;
    let page: Value = gateway.get("/api/movies").await.json().await.unwrap();
    assert_eq!(page["movies"].as_array().unwrap().len(), 2, "{page}");
    let deleted = gateway
        .http
        .delete(gateway.url(&format!("/api/movies/{created}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(
        gateway
            .get(&format!("/api/movies/{created}"))
            .await
            .status(),
        404
    );

    // Only 200s are kept: the 404 above is not served again once the movie exists.
    let (missing_id, missing) = (created + 1, format!("/api/movies/{}", created + 1));
    assert_eq!(gateway.get(&missing).await.status(), 404);
    assert_eq!(create(&gateway, "Ikiru").await, missing_id);
    assert_eq!(gateway.get(&missing).await.status(), 200);

    // Spellings of a movie's path that an event could not name are never cached.
    put_behind(inventory, id, "Behind").await;
    assert_eq!(title_of(&gateway, &format!("{path}?x=1")).await, "Behind");
    assert_eq!(
        title_of(&gateway, &path).await,
        "Heat (1995)",
        "the canonical one is (stale here, since no events reach this gateway)"
    );
}

#[tokio::test]
async fn while_the_events_are_lost_answers_live_at_most_the_ttl_then_resubscribing_drops_all() {
    let exchange = unique_exchange();
    let inventory = spawn_inventory_publishing_to(&exchange).await;
    let (proxy, url) = test_support::broker_through_proxy().await;
    let ttl = Duration::from_secs(2);
    let gateway = spawn_caching_gateway(inventory, &url, &exchange, ttl).await;
    let id = create(&gateway, "Stalker").await;
    let path = format!("/api/movies/{id}");

    lose_the_events(&proxy, &gateway).await;
    assert_eq!(title_of(&gateway, &path).await, "Stalker");
    let cached_at = std::time::Instant::now();
    put_behind(inventory, id, "Solaris").await;
    // Stale, but never for longer than the TTL.
    loop {
        let title = title_of(&gateway, &path).await;
        if title == "Solaris" {
            break;
        }
        // (A read that began just before the expiry may end just after it.)
        let bound = ttl + Duration::from_millis(500);
        assert!(
            cached_at.elapsed() < bound,
            "stale for {:?}",
            cached_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Resubscribing drops everything (events may have been missed), and events flow again.
    let invalidations = metric(
        &scrape(&gateway).await,
        "gateway_catalogue_cache_invalidations_total",
    );
    proxy.restore();
    eventually(
        Duration::from_secs(10),
        "the gateway to resubscribe",
        || async {
            metric(
                &scrape(&gateway).await,
                "gateway_catalogue_events_subscribed",
            ) == 1.0
        },
    )
    .await;
    let scrape_now = scrape(&gateway).await;
    assert!(metric(&scrape_now, "gateway_catalogue_cache_invalidations_total") > invalidations);
    assert_eq!(metric(&scrape_now, "gateway_catalogue_cache_entries"), 0.0);
    assert_eq!(title_of(&gateway, &path).await, "Solaris");
    put_behind(inventory, id, "Mirror").await;
    eventually(
        Duration::from_secs(1),
        "the event to invalidate the movie",
        || async { title_of(&gateway, &path).await == "Mirror" },
    )
    .await;
}

#[tokio::test]
async fn while_the_events_are_lost_an_answer_that_came_slowly_is_no_fresher_for_it() {
    let exchange = unique_exchange();
    let inventory = spawn_inventory_publishing_to(&exchange).await;
    let slow_inventory = test_support::TcpProxy::start(inventory).await;
    let (broker, url) = test_support::broker_through_proxy().await;
    let ttl = Duration::from_secs(1);
    let gateway = spawn_caching_gateway(slow_inventory.addr(), &url, &exchange, ttl).await;
    let id = create(&gateway, "Stalker").await;
    let path = format!("/api/movies/{id}");
    lose_the_events(&broker, &gateway).await;

    // Inventory answers at once, but the answer takes longer than the TTL to arrive; the movie
    // changes meanwhile.
    slow_inventory.delay_answers(ttl + Duration::from_millis(500));
    let slow_read = tokio::spawn({
        let url = format!("{}{path}", gateway.address);
        async move { reqwest::get(url).await.unwrap().status() }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    put_behind(inventory, id, "Solaris").await;
    assert_eq!(slow_read.await.unwrap(), 200);
    slow_inventory.delay_answers(Duration::ZERO);

    // Kept from when inventory was asked, that answer is already older than the TTL.
    assert_eq!(title_of(&gateway, &path).await, "Solaris");
}

#[tokio::test]
async fn misses_of_one_read_at_once_ask_inventory_once() {
    let (slow_inventory, gateway) = caching_gateway_before_a_slow_inventory().await;
    create(&gateway, "Playtime").await;
    // (The gateway forgot its pages at its own write, and again when the event arrives.)
    eventually(Duration::from_secs(10), "the creation's event", || async {
        metric(
            &scrape(&gateway).await,
            r#"gateway_catalogue_events_received_total{type="movie.created"}"#,
        ) == 1.0
    })
    .await;
    let before = asked_inventory(&gateway).await;

    // A cold cache and a hundred clients asking for the same page while inventory takes its time.
    slow_inventory.delay_answers(Duration::from_millis(300));
    let reads = (0..100).map(|_| {
        let url = format!("{}/api/movies", gateway.address);
        async move {
            let response = reqwest::get(url).await.unwrap();
            (response.status(), response.text().await.unwrap())
        }
    });
    for (status, body) in futures_util::future::join_all(reads).await {
        assert_eq!(status, 200);
        assert!(body.contains("Playtime"), "{body}");
    }
    // One of them asked; the others waited for its answer (a hundred asked before).
    assert_eq!(asked_inventory(&gateway).await - before, 1.0);
}

#[tokio::test]
async fn a_head_missing_first_does_not_send_the_others_to_inventory() {
    let (slow_inventory, gateway) = caching_gateway_before_a_slow_inventory().await;
    let before = asked_inventory(&gateway).await;

    // A HEAD first (its answer, without a body, could be given to nobody else), then fifty plain
    // GETs while inventory takes its time.
    slow_inventory.delay_answers(Duration::from_millis(300));
    let http = reqwest::Client::new();
    let url = format!("{}/api/movies", gateway.address);
    let head = http.head(&url).send();
    let reads = futures_util::future::join_all((0..50).map(|_| async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        http.get(&url).send().await.unwrap().status()
    }));
    let (head, reads) = tokio::join!(head, reads);
    assert_eq!(head.unwrap().status(), 200);
    assert!(reads.iter().all(|status| *status == 200), "{reads:?}");
    // The HEAD asked for itself, and one GET for the fifty (fifty-one when the HEAD led them).
    assert_eq!(asked_inventory(&gateway).await - before, 2.0);
}

#[tokio::test]
async fn reads_waiting_on_a_read_inventory_fails_share_its_failure_instead_of_asking_again() {
    let hung = crate::helpers::hung_instance().await;
    let mut settings = gateway_settings(hung, &test_support::test_amqp_url(), &unique_queue());
    settings.upstream.request_timeout = Duration::from_millis(500);
    let (gateway, _) = spawn_gateway_with(settings).await;

    let reads = (0..20).map(|_| async { gateway.get("/api/movies").await.status().as_u16() });
    let mut statuses = futures_util::future::join_all(reads).await;
    statuses.sort_unstable();
    // One asked and timed out (504); the others got a quick 503 when it did, instead of a
    // timeout of their own after it (twice as long, and twenty calls to a hung inventory).
    assert_eq!(statuses[..19], [503; 19]);
    assert_eq!(statuses[19], 504);
    let timeouts = metric(
        &scrape(&gateway).await,
        r#"gateway_upstream_errors_total{kind="timeout",upstream="inventory"}"#,
    );
    assert_eq!(timeouts, 1.0);
}
