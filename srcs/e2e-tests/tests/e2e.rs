//! The three real service binaries, wired together on loopback with a real PostgreSQL and
//! RabbitMQ: what an operator runs, end to end.

use std::{collections::HashSet, time::Duration};

use e2e_tests::{bin_dir, free_port, Platform, ServiceProcess, ADMIN_TOKEN};
use futures_util::{stream, StreamExt};
use serde_json::{json, Value};
use test_support::{eventually, ServiceEnv, TestDatabase};
use tokio::process::Command;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test]
async fn the_platform_end_to_end_with_billing_stopped_and_restarted() {
    let mut platform = Platform::start().await;
    let (http, gateway) = (platform.http.clone(), platform.gateway_url.clone());

    // The catalogue through the gateway.
    let response = http
        .post(format!("{gateway}/api/movies"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"title": "The Matrix", "description": "Sci-Fi Classic"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let movie: Value = test_support::get_json(&http, format!("{gateway}{location}")).await;
    assert_eq!(movie["title"], "The Matrix");
    let response = http
        .put(format!("{gateway}{location}"))
        .bearer_auth(ADMIN_TOKEN)
        .json(
            &json!({"title": "The Matrix", "description": "Sci-Fi Classic", "release_year": 1999}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let list: Value = test_support::get_json(&http, format!("{gateway}/api/movies")).await;
    assert_eq!(list["movies"][0]["release_year"], 1999);
    assert_eq!(
        http.delete(format!("{gateway}{location}"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        http.get(format!("{gateway}{location}"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // Orders while billing runs.
    let mut expected = HashSet::new();
    for i in 0..5 {
        let (status, body) = platform
            .order(&i.to_string(), &format!("live-{i}"))
            .await
            .unwrap();
        assert_eq!(status, 202, "{body}");
        expected.insert(body["order_id"].as_str().unwrap().to_owned());
    }
    eventually(
        Duration::from_secs(20),
        "the first orders are billed",
        || async { platform.billed().await.0 == expected },
    )
    .await;

    // Billing stopped: the gateway keeps accepting orders.
    platform.billing.take().unwrap().stop().await;
    let answers: Vec<(u16, Value)> = stream::iter(0..500)
        .map(|i| {
            let platform = &platform;
            async move {
                platform
                    .order(&i.to_string(), &format!("backlog-{i}"))
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut backlog = HashSet::new();
    for (status, body) in &answers {
        assert_eq!(*status, 202, "{body}");
        assert_eq!(body["status"], "queued");
        backlog.insert(body["order_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(backlog.len(), 500, "500 distinct orders");
    // A client retrying with the same keys gets the same orders back.
    for i in 0..20 {
        let (status, body) = platform
            .order(&i.to_string(), &format!("backlog-{i}"))
            .await
            .unwrap();
        assert_eq!(status, 202);
        assert!(
            backlog.contains(body["order_id"].as_str().unwrap()),
            "replayed key, same order id"
        );
    }
    let (_, replayed_live) = platform.order("0", "live-0").await.unwrap();
    assert!(expected.contains(replayed_live["order_id"].as_str().unwrap()));
    assert_eq!(
        platform.billed().await.0.len(),
        5,
        "nothing billed while billing is stopped"
    );

    // Billing started again drains the backlog: every order exactly once, nothing new from replays.
    platform.start_billing().await;
    expected.extend(backlog);
    eventually(
        Duration::from_secs(60),
        "the backlog is drained",
        || async { platform.billed().await.0.len() >= expected.len() },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (billed, rows) = platform.billed().await;
    assert_eq!(
        billed, expected,
        "exactly the acknowledged orders were billed"
    );
    assert_eq!(rows, 505, "one row per order, no duplicates");

    // Order status through the gateway: 404 while queued, 200 once billed.
    platform.billing.take().unwrap().stop().await;
    // Stopped, not restarting: its socket is closed, as `systemctl stop` closes it.
    platform.close_billing_socket();
    let (status, queued) = platform.order("1", "status-check").await.unwrap();
    assert_eq!(status, 202);
    let status_url = format!(
        "{gateway}/api/billing/{}",
        queued["order_id"].as_str().unwrap()
    );
    assert_eq!(
        http.get(&status_url).send().await.unwrap().status(),
        502,
        "billing-app is down"
    );
    platform.start_billing().await;
    eventually(Duration::from_secs(30), "the order is billed", || async {
        http.get(&status_url).send().await.unwrap().status() == 200
    })
    .await;
    let billed: Value = test_support::get_json(&http, &status_url).await;
    assert_eq!(billed["status"], "billed");
    let unknown = http
        .get(format!(
            "{gateway}/api/billing/0b6b5a57-52c3-4a4b-8a0c-1b8e2f3f4e5d"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    // One request id follows a request through every service it touches, in their logs.
    let trace = |what: &str| format!("e2e-{what}-{}", uuid::Uuid::new_v4().simple());
    let (movie_trace, order_trace) = (trace("movie"), trace("order"));
    let response = http
        .post(format!("{gateway}/api/movies"))
        .bearer_auth(ADMIN_TOKEN)
        .header("x-request-id", &movie_trace)
        .json(&json!({"title": "Traced"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let response = http
        .post(format!("{gateway}/api/billing"))
        .header("x-request-id", &order_trace)
        .header("traceparent", TRACEPARENT)
        .json(&json!({"user_id": "trace", "number_of_items": 1, "total_amount": "1.00"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    eventually(
        Duration::from_secs(20),
        "the traced order is billed",
        || async {
            let billing = platform.billing.as_ref().unwrap();
            billing
                .log_text()
                .contains(&format!("request_id={order_trace} "))
        },
    )
    .await;
    let (api_gateway, inventory, billing) = (
        platform.gateway.as_ref().unwrap(),
        platform.inventory.as_ref().unwrap(),
        platform.billing.as_ref().unwrap(),
    );
    for (service, id) in [
        (api_gateway, &movie_trace),
        (inventory, &movie_trace),
        (api_gateway, &order_trace),
    ] {
        assert!(
            service.log_text().contains(&format!("request_id={id} ")),
            "{} logs {id}",
            service.name
        );
    }
    let billed_line = billing
        .log_text()
        .lines()
        .find(|l| l.contains(&order_trace))
        .unwrap()
        .to_owned();
    assert!(billed_line.contains("billed"), "{billed_line}");
    assert!(
        billed_line.contains(&format!("traceparent={TRACEPARENT}")),
        "the trace context reaches billing: {billed_line}"
    );

    // The admin token and the database passwords never reach a log.
    for service in [api_gateway, billing, inventory] {
        let log = service.log_text();
        assert!(
            !log.contains(ADMIN_TOKEN),
            "{} logs the admin token",
            service.name
        );
        assert!(
            !log.contains(&test_support::test_database_url()),
            "{} logs a database URL",
            service.name
        );
    }

    platform.stop_all().await;
}

/// Runs a service binary with only `env` and returns its exit code and stderr.
async fn run_with_env(name: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = tokio::time::timeout(
        Duration::from_secs(10),
        Command::new(bin_dir().join(name))
            .env_clear()
            .envs(env.iter().copied())
            .current_dir(std::env::temp_dir()) // no stray .env file
            .output(),
    )
    .await
    .expect("a misconfigured service stops at once")
    .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_missing_or_malformed_variable_stops_the_service_with_one_line_naming_it() {
    let (code, stderr) = run_with_env(
        "billing-app",
        &[("DATABASE_URL", "postgres://u:p@127.0.0.1/db")],
    )
    .await;
    assert_eq!(code, Some(78));
    assert_eq!(stderr.trim(), "billing-app: configuration: AMQP_URL is not set (see the example env file of this service)");

    let (code, stderr) = run_with_env(
        "api-gateway",
        &[
            ("AMQP_URL", "amqp://u:p@127.0.0.1"),
            ("GATEWAY_BIND_ADDR", "not-an-address"),
        ],
    )
    .await;
    assert_eq!(code, Some(78));
    assert!(
        stderr.starts_with("api-gateway: configuration: GATEWAY_BIND_ADDR is invalid"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1);

    let (code, stderr) = run_with_env(
        "inventory-app",
        &[
            ("DATABASE_URL", "postgres://u:p@h/d"),
            ("DATABASE_POOL_TIMEOUT_MS", "0"),
        ],
    )
    .await;
    assert_eq!(code, Some(78));
    assert!(
        stderr.contains("DATABASE_POOL_TIMEOUT_MS is invalid"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("u:p"),
        "no secret in the message: {stderr}"
    );

    // Beyond what the cache crate accepts (a thousand years) it was a panic, not a message.
    let (code, stderr) = run_with_env(
        "api-gateway",
        &[
            ("AMQP_URL", "amqp://u:p@127.0.0.1"),
            (
                "ADMIN_TOKEN",
                "a-token-long-enough-for-the-gateway-0123456789",
            ),
            ("CATALOGUE_CACHE_TTL_MS", "99999999999999"),
        ],
    )
    .await;
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.starts_with("api-gateway: configuration: CATALOGUE_CACHE_TTL_MS is invalid"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_socket_passed_by_systemd_is_served_and_a_different_setting_is_reported() {
    let no_migration = |_url: String| async {};
    let db = TestDatabase::create("e2e", "empty", no_migration).await;
    // systemd's socket on one port, the configuration naming another (as after an edit of the
    // env file followed by `systemctl restart`).
    let kept = e2e_tests::held_socket();
    let kept_addr = kept.local_addr().unwrap();
    // An address of its own on loopback: no other test can be listening there meanwhile.
    let configured = format!("127.0.0.42:{}", free_port());
    let env = ServiceEnv::inventory(&db.url).with("INVENTORY_BIND_ADDR", configured.clone());
    let inventory = ServiceProcess::start_with_socket("inventory-app", env.vars(), &kept);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    eventually(
        Duration::from_secs(20),
        "inventory answers on the kept socket",
        || async {
            let health = http.get(format!("http://{kept_addr}/health")).send().await;
            health.is_ok_and(|response| response.status() == 200)
        },
    )
    .await;
    let log = inventory.log_text();
    assert!(
        log.contains(&format!(
            "listening on {kept_addr}, the socket systemd kept"
        )) && log.contains(&format!(
            "INVENTORY_BIND_ADDR={configured} takes effect after"
        )),
        "the log names both addresses:\n{log}"
    );
    assert!(
        http.get(format!("http://{configured}/health"))
            .send()
            .await
            .is_err(),
        "nothing listens on the configured address"
    );
    inventory.stop().await;
}
