use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{
    assert_problem, gateway_settings, hung_instance, spawn_gateway, spawn_gateway_in_front_of,
    spawn_gateway_with, spawn_inventory, ADMIN_TOKEN,
};

#[tokio::test]
async fn movie_crud_passes_through_faithfully() {
    let gateway = spawn_gateway().await;
    let http = &gateway.http;

    let response = http
        .post(gateway.url("/api/movies"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"title": "The Matrix", "description": "Sci-Fi Classic"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    assert_eq!(location, format!("/api/movies/{}", created["id"]));

    let fetched: Value = test_support::get_json(http, gateway.url(&location)).await;
    assert_eq!(fetched, created);

    let updated: Value = http
        .put(gateway.url(&location))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"title": "The Matrix", "release_year": 1999}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(updated["release_year"], 1999);

    let list: Value =
        test_support::get_json(http, gateway.url("/api/movies?q=matrix&limit=5")).await;
    assert_eq!(list["movies"].as_array().unwrap().len(), 1);
    assert_eq!(list["limit"], 5);

    assert_eq!(
        http.delete(gateway.url(&location))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_problem(http.get(gateway.url(&location)).send().await.unwrap(), 404).await;
    let deleted: Value = http
        .delete(gateway.url("/api/movies"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(deleted, json!({"deleted": 0}));
}

#[tokio::test]
async fn inventory_errors_pass_through_with_the_same_request_id() {
    let gateway = spawn_gateway().await;
    let response = gateway
        .http
        .post(gateway.url("/api/movies"))
        .bearer_auth(ADMIN_TOKEN)
        .header("x-request-id", "gw-trace-1")
        .json(&json!({"title": "", "rating": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "gw-trace-1");
    let problem = assert_problem(response, 400).await;
    assert_eq!(
        problem["request_id"], "gw-trace-1",
        "inventory saw the gateway's request id"
    );
    assert_eq!(problem["errors"].as_array().unwrap().len(), 2);

    let bad_id = gateway.get("/api/movies/abc").await;
    assert_problem(bad_id, 400).await;
}

#[tokio::test]
async fn inventory_unreachable_gives_a_quick_502() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (gateway, _) = spawn_gateway_in_front_of(closed).await;
    let started = Instant::now();
    let response = gateway.get("/api/movies").await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(response.headers().contains_key("retry-after"));
    let problem = assert_problem(response, 502).await;
    assert!(
        !problem.to_string().contains("127.0.0.1"),
        "no internals leak: {problem}"
    );
}

#[tokio::test]
async fn a_hanging_inventory_gives_a_504_after_the_upstream_timeout() {
    let hanging = hung_instance().await;
    let queue = test_support::unique_queue();
    let mut settings = gateway_settings(hanging, &test_support::test_amqp_url(), &queue);
    settings.upstream.request_timeout = Duration::from_millis(300);
    let (gateway, _) = spawn_gateway_with(settings).await;
    let started = Instant::now();
    let response = gateway.get("/api/movies").await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
    assert_problem(response, 504).await;
}

/// Whatever the number of clients, one instance gets at most `UPSTREAM_MAX_CONNECTIONS` requests
/// (and connections) at once from the gateway; the others wait their turn, and after
/// `UPSTREAM_QUEUE_TIMEOUT_MS` get a 503 instead of piling up.
#[tokio::test]
async fn requests_beyond_the_upstream_slots_wait_briefly_then_get_a_503() {
    // Accepts connections, counts those that bring a catalogue request (not the readiness
    // probe's), and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hanging = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut head = [0; 64];
                let read = tokio::io::AsyncReadExt::read(&mut socket, &mut head).await;
                if head.starts_with(b"GET /api/movies") && read.is_ok() {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                std::future::pending::<()>().await;
                drop(socket);
            });
        }
    });
    let queue = test_support::unique_queue();
    let mut settings = gateway_settings(hanging, &test_support::test_amqp_url(), &queue);
    settings.upstream.max_connections = 2;
    settings.upstream.queue_timeout = Duration::from_millis(200);
    settings.upstream.request_timeout = Duration::from_millis(1500);
    let (gateway, _) = spawn_gateway_with(settings).await;

    // Eight different pages: the same page would be asked once for all (the cache's misses).
    let gateway = &gateway;
    let requests = (0..8).map(|page| async move {
        let started = Instant::now();
        let response = gateway.get(&format!("/api/movies?page={page}")).await;
        (started.elapsed(), response)
    });
    let mut statuses = Vec::new();
    for (elapsed, response) in futures_util::future::join_all(requests).await {
        let status = response.status().as_u16();
        statuses.push(status);
        if status == 503 {
            assert!(
                elapsed < Duration::from_millis(1000),
                "a quick 503: {elapsed:?}"
            );
            assert_eq!(response.headers()["retry-after"], "1");
            let problem = assert_problem(response, 503).await;
            assert!(
                problem["detail"].as_str().unwrap().contains("busy"),
                "{problem}"
            );
        }
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [503, 503, 503, 503, 503, 503, 504, 504]);
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// `/ready` is unlimited (orchestrators poll it), so it must not cost inventory a connection
/// per caller: concurrent callers share one probe.
#[tokio::test]
async fn a_flood_of_readiness_checks_makes_one_probe_at_a_time() {
    let inventory = test_support::TcpProxy::start(spawn_inventory().await).await;
    let queue = test_support::unique_queue();
    let settings = gateway_settings(inventory.addr(), &test_support::test_amqp_url(), &queue);
    let (gateway, _) = spawn_gateway_with(settings).await;
    let before = inventory.connections_accepted();
    // A client of its own per check: a new connection each, as a flood would bring.
    let checks = (0..200).map(|_| async {
        let client = reqwest::Client::new();
        let response = client.get(gateway.url("/ready")).send().await.unwrap();
        response.status().as_u16()
    });
    let statuses = futures_util::future::join_all(checks).await;
    assert!(statuses.iter().all(|&status| status == 200), "{statuses:?}");
    let opened = inventory.connections_accepted() - before;
    assert!(
        opened <= 4,
        "{opened} connections to inventory for 200 checks"
    );
}

/// A client that leaves while its request waits for a slot gives its place up: clients that
/// connect, ask and leave at a high rate must not queue up work nobody will read (each with its
/// socket) ahead of the clients that stay.
#[tokio::test]
async fn clients_that_leave_give_up_their_place_in_the_queue_for_a_slot() {
    let inventory = spawn_inventory().await;
    let slow = test_support::TcpProxy::start(inventory).await;
    slow.delay_answers(Duration::from_secs(1));
    let queue = test_support::unique_queue();
    let mut settings = gateway_settings(slow.addr(), &test_support::test_amqp_url(), &queue);
    settings.cache = None;
    settings.upstream.max_connections = 1;
    settings.upstream.queue_timeout = Duration::from_secs(3);
    let (gateway, _) = spawn_gateway_with(settings).await;
    // The readiness probe's connection is made; the one slot is taken by a first read.
    let first = tokio::spawn(reqwest::get(gateway.url("/api/movies?first")));
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Ten clients ask and leave (their connections closed) while that read holds the slot.
    for i in 0..10 {
        let leaving = reqwest::Client::new();
        let _ = tokio::time::timeout(
            Duration::from_millis(50),
            leaving
                .get(gateway.url(&format!("/api/movies?left={i}")))
                .send(),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // One that stays is next: answered once the first read is (without giving up, it would wait
    // behind ten one-second reads and get a 503 after its 3 s).
    let started = Instant::now();
    let staying = gateway.get("/api/movies?stayed").await;
    assert_eq!(staying.status(), 200, "after {:?}", started.elapsed());
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
}

#[tokio::test]
async fn requests_beyond_the_upstream_slots_are_answered_in_turn() {
    let inventory = spawn_inventory().await;
    let queue = test_support::unique_queue();
    let mut settings = gateway_settings(inventory, &test_support::test_amqp_url(), &queue);
    settings.upstream.max_connections = 1;
    let (gateway, _) = spawn_gateway_with(settings).await;
    let requests = (0..40).map(|_| gateway.get("/api/movies"));
    let statuses: Vec<u16> = futures_util::future::join_all(requests)
        .await
        .iter()
        .map(|response| response.status().as_u16())
        .collect();
    assert_eq!(statuses, [200; 40]);
}

#[tokio::test]
async fn gateway_limits_and_unknown_routes() {
    let gateway = spawn_gateway().await;
    let huge = json!({"title": "x", "description": "d".repeat(70 * 1024)});
    let response = gateway
        .http
        .post(gateway.url("/api/movies"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&huge)
        .send()
        .await
        .unwrap();
    assert_problem(response, 413).await;
    let response = gateway
        .http
        .post(gateway.url("/api/billing"))
        .json(&huge)
        .send()
        .await
        .unwrap();
    assert_problem(response, 413).await;
    assert_problem(gateway.get("/api/unknown").await, 404).await;
    let wrong_method = gateway.get("/api/billing").await;
    assert_eq!(wrong_method.headers()["allow"], "POST");
    assert_problem(wrong_method, 405).await;
    assert_problem(
        gateway
            .http
            .patch(gateway.url("/api/movies/1"))
            .send()
            .await
            .unwrap(),
        405,
    )
    .await;
    let health: Value = gateway.get("/health").await.json().await.unwrap();
    assert_eq!(health["status"], "ok");
}

#[tokio::test]
async fn a_failing_inventory_opens_the_circuit_then_a_probe_closes_it() {
    let inventory = crate::helpers::spawn_inventory().await;
    let proxy = test_support::TcpProxy::start(inventory).await;
    // Every read must reach inventory: no cache in front of it.
    let mut settings = gateway_settings(
        proxy.addr(),
        &test_support::test_amqp_url(),
        &test_support::unique_queue(),
    );
    settings.cache = None;
    let (gateway, _) = spawn_gateway_with(settings).await;
    let list = || async { gateway.get("/api/movies").await };
    let breaker_state = || async {
        let scrape = gateway.get("/metrics").await.text().await.unwrap();
        scrape
            .lines()
            .find_map(|l| {
                let series = format!(
                    r#"gateway_circuit_breaker_state{{target="{}",upstream="inventory"}} "#,
                    proxy.addr()
                );
                l.strip_prefix(series.as_str()).map(str::to_owned)
            })
            .unwrap()
    };
    assert_eq!(list().await.status(), 200);
    assert_eq!(breaker_state().await, "0");

    proxy.cut();
    for _ in 0..5 {
        assert_eq!(
            list().await.status(),
            502,
            "failures reach the client as 502 until the circuit opens"
        );
    }
    assert_eq!(breaker_state().await, "1");
    let started = Instant::now();
    let response = list().await;
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "open circuit fails fast: {:?}",
        started.elapsed()
    );
    assert!(response.headers().contains_key("retry-after"));
    let problem = assert_problem(response, 503).await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("not calling it"));

    proxy.restore();
    test_support::eventually(
        Duration::from_secs(10),
        "a probe closes the circuit",
        || async { list().await.status() == 200 },
    )
    .await;
    assert_eq!(breaker_state().await, "0");
}

/// A misbehaving upstream on loopback: answers every request with `head` and then `body_len`
/// bytes of body, then closes.
async fn oversized_upstream(head: &'static str, body_len: usize) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let _ = socket.write_all(head.as_bytes()).await;
                let chunk = vec![b'x'; 64 * 1024];
                let mut sent = 0;
                while sent < body_len {
                    let n = chunk.len().min(body_len - sent);
                    if socket.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    sent += n;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_upstream_answer_beyond_16_mib_is_a_502_not_a_memory_blow_up() {
    let too_large = 16 * 1024 * 1024 + 1;
    let announced: &'static str = Box::leak(
        format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {too_large}\r\n\r\n")
            .into_boxed_str(),
    );
    // Announced up front, and found out while reading (no Content-Length, body until close).
    for (head, body_len) in [
        (announced, 0),
        (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
            too_large,
        ),
    ] {
        let upstream = oversized_upstream(head, body_len).await;
        let (gateway, _) = spawn_gateway_in_front_of(upstream).await;
        let response = gateway.get("/api/movies").await;
        assert_problem(response, 502).await;
    }
}

#[tokio::test]
async fn conditional_requests_and_head_pass_through() {
    use reqwest::header;
    let gateway = spawn_gateway().await;
    let http = &gateway.http;
    let created = gateway.post_movie(&json!({"title": "Solaris"})).await;
    let v1 = created.headers()[header::ETAG].to_str().unwrap().to_owned();
    assert!(v1.starts_with("\"1."), "{v1}");
    let location = created.headers()["location"].to_str().unwrap().to_owned();

    let fetched = gateway.get(&location).await;
    assert_eq!(fetched.headers()[header::ETAG], v1.as_str());
    assert_eq!(fetched.headers()[header::CACHE_CONTROL], "public, no-cache");
    let length = fetched.bytes().await.unwrap().len();
    let not_modified = http
        .get(gateway.url(&location))
        .header(header::IF_NONE_MATCH, &v1)
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), 304);
    assert_eq!(not_modified.headers()[header::ETAG], v1.as_str());
    assert!(not_modified.bytes().await.unwrap().is_empty());
    // Two field lines are one list, as inventory reads them.
    let second_line = http
        .get(gateway.url(&location))
        .header(header::IF_NONE_MATCH, "\"0.other\"")
        .header(header::IF_NONE_MATCH, &v1)
        .send()
        .await
        .unwrap();
    assert_eq!(second_line.status(), 304);

    // HEAD: the headers and the length a GET would have, no body.
    let head = http.head(gateway.url(&location)).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()[header::ETAG], v1.as_str());
    assert_eq!(
        head.headers()[header::CONTENT_LENGTH],
        length.to_string().as_str()
    );
    assert!(head.bytes().await.unwrap().is_empty());

    let put = |tag: String| {
        http.put(gateway.url(&location))
            .bearer_auth(ADMIN_TOKEN)
            .header(header::IF_MATCH, tag)
            .json(&json!({"title": "Solaris (1972)"}))
            .send()
    };
    let updated = put(v1.clone()).await.unwrap();
    assert_eq!(updated.status(), 200);
    assert_ne!(updated.headers()[header::ETAG], v1.as_str());
    assert_problem(put(v1).await.unwrap(), 412).await;
}
