use std::{num::NonZeroU32, time::Duration};

use serde_json::{json, Value};

use crate::helpers::{
    assert_problem, gateway_settings, spawn_gateway, spawn_gateway_with, spawn_inventory,
    ADMIN_TOKEN,
};

#[tokio::test]
async fn catalogue_writes_need_the_admin_token_and_reads_do_not() {
    let gateway = spawn_gateway().await;
    let http = &gateway.http;
    let created: Value = http
        .post(gateway.url("/api/movies"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"title": "Kept"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let one = format!("/api/movies/{}", created["id"]);
    let body = json!({"title": "Changed"});
    let writes = [
        http.post(gateway.url("/api/movies")).json(&body),
        http.put(gateway.url(&one)).json(&body),
        http.delete(gateway.url(&one)),
        http.delete(gateway.url("/api/movies")),
    ];
    for write in writes {
        for token in [
            None,
            Some("wrong-token-0123456789abcdef012345"),
            Some(&ADMIN_TOKEN[1..]),
        ] {
            let request = write.try_clone().unwrap();
            let request = match token {
                Some(token) => request.bearer_auth(token),
                None => request,
            };
            let response = request.send().await.unwrap();
            assert_eq!(
                response.headers()["www-authenticate"],
                r#"Bearer realm="movie-platform""#
            );
            let problem = assert_problem(response, 401).await;
            assert!(problem["detail"].as_str().unwrap().contains("Bearer"));
            assert!(
                !problem.to_string().contains(ADMIN_TOKEN),
                "the token is never echoed"
            );
        }
    }
    // Nothing changed, and reads stay public.
    let list: Value = test_support::get_json(http, gateway.url("/api/movies")).await;
    assert_eq!(list["movies"].as_array().unwrap().len(), 1);
    assert_eq!(list["movies"][0]["title"], "Kept");
    assert_eq!(
        http.get(gateway.url(&one)).send().await.unwrap().status(),
        200
    );
    // Orders are not catalogue writes.
    let order = json!({"user_id": "1", "number_of_items": 1, "total_amount": "1.00"});
    assert_eq!(gateway.post_order(&order, None).await.status(), 202);
}

#[tokio::test]
async fn each_client_address_is_rate_limited_on_the_api_only() {
    let inventory = spawn_inventory().await;
    let queue = test_support::unique_queue();
    let mut settings = gateway_settings(inventory, &test_support::test_amqp_url(), &queue);
    settings.rate_limit = Some((NonZeroU32::new(2).unwrap(), NonZeroU32::new(3).unwrap()));
    let (gateway, _) = spawn_gateway_with(settings).await;
    let list = || async { gateway.get("/api/movies").await };

    for _ in 0..3 {
        assert_eq!(list().await.status(), 200, "the burst is allowed");
    }
    let limited = list().await;
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_problem(limited, 429).await;
    for path in ["/health", "/ready", "/metrics"] {
        assert_ne!(gateway.get(path).await.status(), 429, "{path}");
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        list().await.status(),
        200,
        "tokens come back at the configured rate"
    );
}
