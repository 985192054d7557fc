//! The hostile-client suite: the three real binaries attacked over raw TCP, as a client that
//! ignores HTTP's manners would. Each probe states what must happen and fails otherwise; none
//! of them may ever get a 500, a hang, a second (smuggled) answer or a changed catalogue.

use std::time::{Duration, Instant};

use e2e_tests::{Platform, ADMIN_TOKEN};
use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// What a raw exchange produced: every byte the server sent until it closed the connection or
/// `wait` passed.
struct Raw {
    text: String,
    closed: bool,
    elapsed: Duration,
}

/// Sends `request` (optionally in two parts with a pause between) and reads what comes back.
async fn exchange(addr: &str, request: &[u8], wait: Duration) -> Raw {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    let closed = loop {
        match tokio::time::timeout_at((started + wait).into(), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
            Err(_) => break false,
        }
    };
    Raw {
        text: String::from_utf8_lossy(&received).into_owned(),
        closed,
        elapsed: started.elapsed(),
    }
}

/// One HTTP answer read off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }

    /// Asserts the shared error shape: problem+json with this status and the request id.
    fn assert_problem(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.header("content-type").as_deref(),
            Some("application/problem+json"),
            "{self:?}"
        );
        let problem: Value = serde_json::from_str(&self.body).expect("a JSON problem");
        assert_eq!(problem["status"], status, "{problem}");
        assert!(problem["request_id"].is_string(), "{problem}");
        problem
    }
}

/// Every answer in `text`, in order (bodies by Content-Length; these services never chunk).
fn answers(text: &str) -> Vec<Answer> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(head_end) = rest.find("\r\n\r\n") {
        let head = &rest[..head_end];
        let Some(status) = head
            .strip_prefix("HTTP/1.1 ")
            .and_then(|line| line.get(..3))
            .and_then(|code| code.parse().ok())
        else {
            break;
        };
        let mut answer = Answer {
            status,
            head: head.to_owned(),
            body: String::new(),
        };
        let length: usize = answer
            .header("content-length")
            .and_then(|length| length.parse().ok())
            .unwrap_or(0);
        let body_start = head_end + 4;
        let body_end = (body_start + length).min(rest.len());
        answer.body = rest[body_start..body_end].to_owned();
        rest = &rest[body_end..];
        found.push(answer);
    }
    found
}

fn host_of(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

const ORDER: &str = r#"{"user_id": "hostile", "number_of_items": 1, "total_amount": "1.00"}"#;

fn post(path: &str, headers: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n{headers}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn get(path: &str, headers: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n{headers}\r\n").into_bytes()
}

/// The catalogue as the gateway lists it.
async fn titles(platform: &Platform) -> Vec<String> {
    let list = test_support::get_json(
        &platform.http,
        format!("{}/api/movies?limit=500", platform.gateway_url),
    )
    .await;
    list["movies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|movie| movie["title"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_rate_limit_holds_however_the_path_or_headers_are_spelled() {
    let mut platform = Platform::start().await;
    platform
        .restart_gateway_with(&[("RATE_LIMIT_PER_SECOND", "1"), ("RATE_LIMIT_BURST", "2")])
        .await;
    let gateway = host_of(&platform.gateway_url);
    let wait = Duration::from_secs(5);
    // Spend the burst on the plain spelling.
    for _ in 0..2 {
        let raw = exchange(&gateway, &get("/api/movies", "Connection: close\r\n"), wait).await;
        assert_eq!(answers(&raw.text)[0].status, 200);
    }
    // Every spelling that reaches a route is limited like it; one that reaches none is a 404.
    let variants: [(&str, Vec<u8>); 9] = [
        ("plain", get("/api/movies", "")),
        (
            "escaped letter in the first segment",
            get("/%61pi/movies", ""),
        ),
        (
            "escaped letter in the last segment",
            get("/api/%6dovies", ""),
        ),
        ("upper-case escape", get("/%61pi/%6Dovies", "")),
        ("query string", get("/api/movies?limit=1", "")),
        ("one movie", get("/api/movies/1", "")),
        (
            "spoofed forwarding headers",
            get(
                "/api/movies",
                "X-Forwarded-For: 10.9.8.7\r\nX-Real-IP: 10.9.8.7\r\nForwarded: for=10.9.8.7\r\n",
            ),
        ),
        ("an order, escaped", post("/%61pi/billing", "", ORDER)),
        (
            "an order",
            post("/api/billing", "Idempotency-Key: evade-1\r\n", ORDER),
        ),
    ];
    for (name, request) in variants {
        let mut request = request;
        // One request per connection: the limit must not depend on connection reuse either.
        let text = String::from_utf8(request.clone()).unwrap();
        let with_close = text.replacen("\r\n", "\r\nConnection: close\r\n", 1);
        request = with_close.into_bytes();
        let raw = exchange(&gateway, &request, wait).await;
        let answer = &answers(&raw.text)[0];
        assert_eq!(
            answer.status, 429,
            "{name} walked around the limit: {answer:?}"
        );
        assert!(answer.header("retry-after").is_some(), "{name}");
    }
    // Health and readiness are never limited.
    let raw = exchange(&gateway, &get("/health", "Connection: close\r\n"), wait).await;
    assert_eq!(answers(&raw.text)[0].status, 200);
    platform.stop_all().await;
}

#[tokio::test]
async fn a_stalled_body_gets_408_and_its_connection_closed_on_every_service() {
    let platform = Platform::start().await;
    let authorization = format!("Authorization: Bearer {ADMIN_TOKEN}\r\n");
    let billing = platform.billing_addr().to_string();
    let stalled = |path: &str, headers: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n{headers}\
             Content-Length: 100\r\n\r\n{{\"title\": "
        )
        .into_bytes()
    };
    // The same with a chunked body whose first chunk never ends.
    let stalled_chunked = |path: &str, headers: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n{headers}\
             Transfer-Encoding: chunked\r\n\r\n40\r\n{{\"title\": "
        )
        .into_bytes()
    };
    for (service, addr, request) in [
        (
            "gateway, orders, chunked",
            host_of(&platform.gateway_url),
            stalled_chunked("/api/billing", ""),
        ),
        (
            "inventory, chunked",
            host_of(&platform.inventory_url),
            stalled_chunked("/api/movies", &authorization),
        ),
        (
            "gateway, orders",
            host_of(&platform.gateway_url),
            stalled("/api/billing", ""),
        ),
        (
            "gateway, catalogue",
            host_of(&platform.gateway_url),
            stalled("/api/movies", &authorization),
        ),
        (
            "inventory",
            host_of(&platform.inventory_url),
            stalled("/api/movies", &authorization),
        ),
    ] {
        let raw = exchange(&addr, &request, Duration::from_secs(15)).await;
        assert!(raw.closed, "{service}: the connection is closed, not held");
        assert!(
            raw.elapsed < Duration::from_secs(9),
            "{service}: within seconds, not {:?}",
            raw.elapsed
        );
        let found = answers(&raw.text);
        assert_eq!(found.len(), 1, "{service}: {}", raw.text);
        let problem = found[0].assert_problem(408);
        assert!(
            problem["detail"].as_str().unwrap().contains("body"),
            "{problem}"
        );
    }
    // billing's listener reads no body: it answers at once and closes rather than waiting for
    // the rest of one.
    for request in [
        stalled("/api/billing/not-a-uuid", ""),
        stalled_chunked("/api/billing/not-a-uuid", ""),
        stalled_chunked("/health", ""),
    ] {
        let raw = exchange(&billing, &request, Duration::from_secs(15)).await;
        assert!(
            raw.closed && raw.elapsed < Duration::from_secs(4),
            "billing: {:?}",
            raw.elapsed
        );
        assert_eq!(answers(&raw.text).len(), 1, "billing: {}", raw.text);
    }
    // A head that never ends is cut off too (actix-http's own deadline: a bare 408).
    for addr in [
        host_of(&platform.gateway_url),
        host_of(&platform.inventory_url),
        billing.clone(),
    ] {
        let raw = exchange(
            &addr,
            b"GET /api/movies HTTP/1.1\r\nHost: test\r\nX-Slow: 1",
            Duration::from_secs(15),
        )
        .await;
        assert!(
            raw.closed && raw.elapsed < Duration::from_secs(9),
            "{addr}: slow head held {:?}",
            raw.elapsed
        );
    }
    assert!(titles(&platform).await.is_empty(), "nothing was created");
    platform.stop_all().await;
}

#[tokio::test]
async fn oversized_heads_are_refused_with_431_and_real_ones_served() {
    let platform = Platform::start().await;
    for addr in [
        host_of(&platform.gateway_url),
        host_of(&platform.inventory_url),
        platform.billing_addr().to_string(),
    ] {
        let wait = Duration::from_secs(10);
        let fine = get(
            "/health",
            &format!("Cookie: {}\r\nConnection: close\r\n", "c".repeat(7 * 1024)),
        );
        assert_eq!(
            answers(&exchange(&addr, &fine, wait).await.text)[0].status,
            200,
            "{addr}"
        );

        let one_big = get("/health", &format!("X-Big: {}\r\n", "b".repeat(64 * 1024)));
        let raw_big = exchange(&addr, &one_big, wait).await;
        let problem = answers(&raw_big.text)[0].assert_problem(431);
        assert!(
            problem["detail"].as_str().unwrap().contains("x-big"),
            "{problem}"
        );
        assert!(raw_big.closed, "{addr}: closed after a refused head");

        let many: String = (0..6)
            .map(|i| format!("X-Part-{i}: {}\r\n", "p".repeat(6000)))
            .collect();
        let raw_many = exchange(&addr, &get("/health", &many), wait).await;
        answers(&raw_many.text)[0].assert_problem(431);

        let long_target = get(&format!("/api/movies?q={}", "q".repeat(9 * 1024)), "");
        answers(&exchange(&addr, &long_target, wait).await.text)[0].assert_problem(414);

        // Beyond 128 KiB actix-http refuses the head itself, before any of our code runs: a
        // bare 431 (documented), and the connection closed.
        let huge = get(
            "/health",
            &format!("X-Huge: {}\r\n", "h".repeat(200 * 1024)),
        );
        let raw_huge = exchange(&addr, &huge, wait).await;
        assert_eq!(answers(&raw_huge.text)[0].status, 431, "{addr}");
        assert!(raw_huge.closed);
    }
    platform.stop_all().await;
}

/// A catalogue read's body means nothing: the gateway neither reads it nor passes it on (it
/// would only cost memory while the read waits for inventory), answers the read, and closes
/// the connection, so nothing in that body is ever taken as a request, and a body that never
/// arrives holds nothing.
#[tokio::test]
async fn a_body_sent_with_a_read_is_never_read_as_a_request() {
    let platform = Platform::start().await;
    let gateway = host_of(&platform.gateway_url);
    let smuggled = "GET /api/movies/404 HTTP/1.1\r\nHost: test\r\n\r\n";
    for (name, request) in [
        (
            "a whole body",
            format!("GET /api/movies HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n{smuggled}", smuggled.len()),
        ),
        (
            "a body that stops half way",
            format!("GET /api/movies HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\n\r\n{smuggled}"),
        ),
        (
            "a chunked body",
            format!("GET /api/movies HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n", smuggled.len()),
        ),
    ] {
        let raw = exchange(&gateway, request.as_bytes(), Duration::from_secs(10)).await;
        let found = answers(&raw.text);
        assert_eq!(found.len(), 1, "{name}: {}", raw.text);
        assert_eq!(found[0].status, 200, "{name}: {:?}", found[0]);
        assert!(raw.closed, "{name}: the connection is closed after the answer");
        assert!(
            raw.elapsed < Duration::from_secs(5),
            "{name}: the answer waited {:?} for the body",
            raw.elapsed
        );
    }
    platform.stop_all().await;
}

#[tokio::test]
async fn request_smuggling_and_bad_framing_never_get_a_second_answer() {
    let platform = Platform::start().await;
    let gateway = host_of(&platform.gateway_url);
    let smuggled = "GET /api/movies/404 HTTP/1.1\r\nHost: test\r\n\r\n";
    let probes: Vec<(&str, String)> = vec![
        (
            "CL.TE",
            format!("POST /api/billing HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"),
        ),
        (
            "TE.CL",
            format!("POST /api/billing HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n", smuggled.len()),
        ),
        (
            "two Content-Lengths",
            format!("POST /api/billing HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 49\r\n\r\n{{}}{smuggled}"),
        ),
        (
            "obfuscated Transfer-Encoding",
            format!("POST /api/billing HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nTransfer-Encoding: xchunked\r\nContent-Length: 2\r\n\r\n{{}}{smuggled}"),
        ),
        (
            "a bad chunk size",
            format!("POST /api/billing HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n{smuggled}"),
        ),
        (
            "a negative Content-Length",
            format!("POST /api/billing HTTP/1.1\r\nHost: test\r\nContent-Length: -5\r\n\r\n{smuggled}"),
        ),
        // RFC 9112 lets a server read a bare LF as a line end (actix-http does), so a request
        // after it is a pipelined request, not a smuggled one: its framing must still hold.
        (
            "a bare LF in the head",
            "POST /api/billing HTTP/1.1\nHost: test\nContent-Type: application/json\nContent-Length: 2\n\n{}".to_owned(),
        ),
        (
            "a space before the colon",
            format!("GET /health HTTP/1.1\r\nHost : test\r\n\r\n{smuggled}"),
        ),
    ];
    for (name, request) in probes {
        let raw = exchange(&gateway, request.as_bytes(), Duration::from_secs(10)).await;
        let found = answers(&raw.text);
        assert!(!found.is_empty(), "{name}: no answer at all");
        if name != "a bare LF in the head" {
            // Ambiguous framing: refused once, and the connection closed, so nothing after it
            // can be read as a request.
            assert_eq!(found.len(), 1, "{name}: {}", raw.text);
            assert_eq!(found[0].status, 400, "{name}: {:?}", found[0]);
            assert!(raw.closed, "{name}: the connection is closed");
        }
        for answer in &found {
            assert!(answer.status < 500, "{name}: {answer:?}");
        }
        assert!(
            !found
                .iter()
                .any(|answer| answer.status == 404 && answer.body.contains("404")),
            "{name}: the smuggled request was answered: {}",
            raw.text
        );
        assert!(
            found.iter().all(|answer| answer.status != 202),
            "{name}: an order was accepted from ambiguous framing: {}",
            raw.text
        );
    }
    platform.stop_all().await;
}

#[tokio::test]
async fn malformed_and_ambiguous_bodies_get_400_naming_the_problem() {
    let platform = Platform::start().await;
    let gateway = host_of(&platform.gateway_url);
    let inventory = host_of(&platform.inventory_url);
    let authorization = format!("Authorization: Bearer {ADMIN_TOKEN}\r\nConnection: close\r\n");
    let wait = Duration::from_secs(10);
    let order = |body: &str| post("/api/billing", "Connection: close\r\n", body);

    let twice =
        r#"{"user_id": "1", "number_of_items": 1, "total_amount": "1", "total_amount": "999999"}"#;
    let problem =
        answers(&exchange(&gateway, &order(twice), wait).await.text)[0].assert_problem(400);
    assert_eq!(problem["errors"][0]["field"], "total_amount", "{problem}");
    let twice = r#"{"title": "A", "title": "B"}"#;
    for addr in [&gateway, &inventory] {
        let raw = exchange(addr, &post("/api/movies", &authorization, twice), wait).await;
        let problem = answers(&raw.text)[0].assert_problem(400);
        assert_eq!(problem["errors"][0]["field"], "title", "{problem}");
    }

    let mut bad_utf8 = post("/api/billing", "Connection: close\r\n", "");
    let body = b"{\"user_id\": \"\xff\xfe\", \"number_of_items\": 1, \"total_amount\": \"1\"}";
    let head = String::from_utf8(bad_utf8.clone()).unwrap().replace(
        "Content-Length: 0",
        &format!("Content-Length: {}", body.len()),
    );
    bad_utf8 = [head.as_bytes(), body].concat();
    answers(&exchange(&gateway, &bad_utf8, wait).await.text)[0].assert_problem(400);

    for body in [
        "{",
        "[]",
        "null",
        r#"{"user_id": "1", "number_of_items": 1, "total_amount": 1e400}"#,
        r#"{"user_id": "1", "number_of_items": 1, "total_amount": "NaN"}"#,
        r#"{"user_id": "1", "number_of_items": 99999999999999999999, "total_amount": "1"}"#,
        r#"{"user_id": "a\u0000b", "number_of_items": 1, "total_amount": "1"}"#,
        &format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
    ] {
        let raw = exchange(&gateway, &order(body), wait).await;
        let status = answers(&raw.text)[0].status;
        assert!(status == 400, "{body:.60}: {status}");
    }
    // A body over the limit is refused from its announced length.
    let big = format!(r#"{{"user_id": "{}"}}"#, "u".repeat(70 * 1024));
    answers(&exchange(&gateway, &order(&big), wait).await.text)[0].assert_problem(413);
    platform.stop_all().await;
}

#[tokio::test]
async fn injection_in_every_parameter_is_inert() {
    let platform = Platform::start().await;
    let created = platform
        .http
        .post(format!("{}/api/movies", platform.gateway_url))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"title": "Kept"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let gateway = host_of(&platform.gateway_url);
    let wait = Duration::from_secs(10);
    for path in [
        "/api/movies/1%27%20OR%20%271%27=%271",
        "/api/movies/1;DROP%20TABLE%20movies",
        "/api/movies/..%2F..%2Fetc%2Fpasswd",
        "/api/movies/%00",
        "/api/movies?q=%27%3BDROP%20TABLE%20movies%3B--",
        "/api/movies?q=%25%25%25&limit=1",
        "/api/movies?limit=1%20OR%201=1",
        "/api/movies?cursor=-1",
        "/api/movies?offset=99999999999999999999",
        "/api/billing/%27%20OR%201=1--",
        "/docs/..%2F..%2FCargo.toml",
        "/docs/../../etc/passwd",
    ] {
        let raw = exchange(&gateway, &get(path, "Connection: close\r\n"), wait).await;
        let answer = &answers(&raw.text)[0];
        assert!(
            matches!(answer.status, 200 | 400 | 404),
            "{path}: {answer:?}"
        );
        assert!(!answer.body.contains("root:"), "{path}: a file leaked");
        assert!(
            !answer.body.contains("[workspace]"),
            "{path}: a file leaked"
        );
    }
    // A request id that could forge log lines or headers is replaced, not echoed.
    let raw = exchange(
        &gateway,
        &get(
            "/health",
            "X-Request-Id: abc%0d%0aX-Evil:%201 request_id=forged\r\nConnection: close\r\n",
        ),
        wait,
    )
    .await;
    let answer = &answers(&raw.text)[0];
    let id = answer.header("x-request-id").unwrap();
    assert!(
        uuid::Uuid::parse_str(&id).is_ok(),
        "generated, not echoed: {id}"
    );
    assert!(answer.header("x-evil").is_none());
    assert_eq!(titles(&platform).await, ["Kept"], "the catalogue is intact");
    platform.stop_all().await;
}

#[tokio::test]
async fn catalogue_writes_cannot_be_reached_around_the_admin_token() {
    let platform = Platform::start().await;
    let gateway = host_of(&platform.gateway_url);
    let inventory = host_of(&platform.inventory_url);
    let wait = Duration::from_secs(10);
    let movie = r#"{"title": "Intruder"}"#;
    let attempts: Vec<(&str, &String, Vec<u8>)> = vec![
        ("no token", &gateway, post("/api/movies", "", movie)),
        ("escaped path", &gateway, post("/%61pi/movies", "", movie)),
        (
            "token in another header",
            &gateway,
            post(
                "/api/movies",
                &format!("X-Authorization: Bearer {ADMIN_TOKEN}\r\n"),
                movie,
            ),
        ),
        (
            "token in the query",
            &gateway,
            post(
                &format!("/api/movies?access_token={ADMIN_TOKEN}"),
                "",
                movie,
            ),
        ),
        (
            "prefix of the token",
            &gateway,
            post(
                "/api/movies",
                &format!("Authorization: Bearer {}\r\n", &ADMIN_TOKEN[..20]),
                movie,
            ),
        ),
        (
            "empty bearer",
            &gateway,
            post("/api/movies", "Authorization: Bearer \r\n", movie),
        ),
        (
            "basic scheme",
            &gateway,
            post(
                "/api/movies",
                &format!("Authorization: Basic {ADMIN_TOKEN}\r\n"),
                movie,
            ),
        ),
        (
            "method override",
            &gateway,
            "DELETE /api/movies HTTP/1.1\r\nHost: test\r\nX-HTTP-Method-Override: GET\r\n\r\n"
                .to_owned()
                .into_bytes(),
        ),
        (
            "inventory directly",
            &inventory,
            post("/api/movies", "", movie),
        ),
        (
            "inventory directly, delete all",
            &inventory,
            b"DELETE /api/movies HTTP/1.1\r\nHost: test\r\n\r\n".to_vec(),
        ),
    ];
    for (name, addr, request) in attempts {
        let text =
            String::from_utf8(request)
                .unwrap()
                .replacen("\r\n", "\r\nConnection: close\r\n", 1);
        let raw = exchange(addr, text.as_bytes(), wait).await;
        let answer = &answers(&raw.text)[0];
        answer.assert_problem(401);
        assert!(
            !answer.body.contains(ADMIN_TOKEN),
            "{name}: the token is never echoed"
        );
    }
    // The scheme name in any case is the same credential (RFC 9110).
    let lower = post(
        "/api/movies",
        &format!("Authorization: bearer {ADMIN_TOKEN}\r\nConnection: close\r\n"),
        r#"{"title": "Allowed"}"#,
    );
    assert_eq!(
        answers(&exchange(&gateway, &lower, wait).await.text)[0].status,
        201
    );
    assert_eq!(titles(&platform).await, ["Allowed"]);
    platform.stop_all().await;
}

#[tokio::test]
async fn an_idempotency_key_reused_with_another_payload_is_never_billed() {
    let mut platform = Platform::start().await;
    let order =
        |amount: &str| json!({"user_id": "idem", "number_of_items": 1, "total_amount": amount});
    let http = platform.http.clone();
    let send = |gateway: String, body: Value| {
        let request = http
            .post(format!("{gateway}/api/billing"))
            .header("idempotency-key", "hostile-key-1")
            .json(&body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (status, first) = send(platform.gateway_url.clone(), order("1.00")).await;
    assert_eq!(status, 202);
    let order_id = first["order_id"].as_str().unwrap().to_owned();
    // The same gateway remembers the key: the same payload is answered as before, another is 422.
    let (status, again) = send(platform.gateway_url.clone(), order("1.0")).await;
    assert_eq!((status, &again["order_id"]), (202, &first["order_id"]));
    let (status, problem) = send(platform.gateway_url.clone(), order("999999.00")).await;
    assert_eq!(status, 422, "{problem}");
    // Two keys in one request: which one is meant would be a guess.
    let two_keys = post(
        "/api/billing",
        "Idempotency-Key: other-key\r\nIdempotency-Key: hostile-key-1\r\nConnection: close\r\n",
        r#"{"user_id": "idem", "number_of_items": 1, "total_amount": "999999.00"}"#,
    );
    let raw = exchange(
        &host_of(&platform.gateway_url),
        &two_keys,
        Duration::from_secs(10),
    )
    .await;
    let problem = answers(&raw.text)[0].assert_problem(400);
    assert_eq!(
        problem["errors"][0]["field"], "Idempotency-Key",
        "{problem}"
    );

    // A gateway that never saw the key (a restart here; another instance alike) cannot know:
    // the conflicting payload is queued, and billing records it instead of billing it.
    platform.restart_gateway_with(&[]).await;
    let (status, late) = send(platform.gateway_url.clone(), order("999999.00")).await;
    assert_eq!(status, 202);
    assert_eq!(late["order_id"], first["order_id"]);
    assert_ne!(late["payload_fingerprint"], first["payload_fingerprint"]);

    let status_url = format!("{}/api/billing/{order_id}", platform.gateway_url);
    let mut shown = Value::Null;
    for _ in 0..100 {
        let response = platform.http.get(&status_url).send().await.unwrap();
        if response.status() == 200 {
            shown = response.json().await.unwrap();
            if shown["idempotency_conflicts"]
                .as_array()
                .is_some_and(|c| !c.is_empty())
            {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        shown["total_amount"], "1.00",
        "the first payload is billed: {shown}"
    );
    assert_eq!(shown["payload_fingerprint"], first["payload_fingerprint"]);
    assert_eq!(
        shown["idempotency_conflicts"][0]["payload_fingerprint"], late["payload_fingerprint"],
        "the refused payload is shown: {shown}"
    );
    let (_, rows) = platform.billed().await;
    assert_eq!(rows, 1, "one row, never the conflicting amount");
    platform.stop_all().await;
}

/// actix-http times only a connection's first request head; the services' own connection
/// watch closes a kept-alive connection whose next request stalls.
#[tokio::test]
async fn a_stalled_second_request_on_a_kept_alive_connection_is_closed_on_every_service() {
    let platform = Platform::start().await;
    let probe = |addr: String| async move {
        let started = Instant::now();
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        stream.write_all(&get("/health", "")).await.unwrap();
        let mut buffer = [0u8; 4096];
        let n = stream.read(&mut buffer).await.unwrap();
        assert!(String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"));
        // Half of a second request's head, then one byte every 4 s: never complete.
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHo")
            .await
            .unwrap();
        let closed_after = loop {
            match tokio::time::timeout(Duration::from_secs(4), stream.read(&mut buffer)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break started.elapsed(),
                Ok(Ok(_)) => {}
                Err(_) => {
                    assert!(
                        started.elapsed() < Duration::from_secs(60),
                        "{addr}: still open after a minute"
                    );
                    if stream.write_all(b"s").await.is_err() {
                        break started.elapsed();
                    }
                }
            }
        };
        let limit = common::connection_watch::IDLE_LIMIT + Duration::from_secs(5);
        assert!(
            closed_after < limit,
            "{addr}: closed after {closed_after:?}"
        );
        closed_after
    };
    let (gateway, inventory, billing) = tokio::join!(
        probe(host_of(&platform.gateway_url)),
        probe(host_of(&platform.inventory_url)),
        probe(platform.billing_addr().to_string()),
    );
    println!("stalled second heads closed after {gateway:?}, {inventory:?}, {billing:?}");
    platform.stop_all().await;
}

/// A client that sends requests but never reads the answers (pipelined, with a tiny receive
/// buffer) cannot hold the connection: once the answers back up, it is shut down.
#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off() {
    let platform = Platform::start().await;
    let addr: std::net::SocketAddr = host_of(&platform.gateway_url).parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let request = get("/openapi.yaml", "");
    let started = Instant::now();
    for _ in 0..200 {
        // The gateway stops reading too once its answers back up; a full send buffer is fine.
        if tokio::time::timeout(Duration::from_millis(200), stream.write_all(&request))
            .await
            .is_err()
        {
            break;
        }
    }
    tokio::time::sleep(common::connection_watch::IDLE_LIMIT + Duration::from_secs(3)).await;
    // Now read everything: the connection must have been ended, long before 200 answers.
    let mut received = 0usize;
    let mut buffer = vec![0u8; 64 * 1024];
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => received += n,
            Err(_) => break false,
        }
    };
    assert!(
        ended,
        "still open {:?} after the client stopped reading",
        started.elapsed()
    );
    let answer_size = reqwest::get(format!("{}/openapi.yaml", platform.gateway_url))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .len();
    assert!(
        received < 200 * answer_size,
        "the gateway stopped answering, {received} bytes read"
    );
    platform.stop_all().await;
}

/// A client that sends an order with an Idempotency-Key and resets the connection at once may
/// still have its order published; a second payload under the same key must then never be the
/// one answered 202 while the first is billed.
#[tokio::test]
async fn a_reset_mid_publish_does_not_let_a_second_payload_through_under_the_same_key() {
    use api_gateway::domain::{new_order_id, IdempotencyKey};
    use common::order::UserId;
    let platform = Platform::start().await;
    let gateway = host_of(&platform.gateway_url);
    let order = |key: &str, amount: &str| {
        let body =
            format!(r#"{{"user_id": "reset", "number_of_items": 1, "total_amount": "{amount}"}}"#);
        post(
            "/api/billing",
            &format!("Idempotency-Key: {key}\r\nConnection: close\r\n"),
            &body,
        )
    };
    let mut second_answers = Vec::new();
    for i in 0..150u64 {
        let key = format!("reset-{}-{i}", std::process::id());
        let stream = TcpStream::connect(&gateway).await.unwrap();
        let mut stream = stream;
        stream.write_all(&order(&key, "10.00")).await.unwrap();
        // Reset after 0 to ~2 ms: sometimes before the gateway reads it, sometimes mid-publish.
        tokio::time::sleep(Duration::from_micros((i % 8) * 250)).await;
        stream.set_zero_linger().unwrap();
        drop(stream);
        let raw = exchange(&gateway, &order(&key, "20.00"), Duration::from_secs(10)).await;
        second_answers.push((key, answers(&raw.text)[0].status));
    }
    // Let billing take everything that was queued.
    let mut rows = usize::MAX;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (_, now) = platform.billed().await;
        if now == rows {
            break;
        }
        rows = now;
    }
    let client = platform.billing_db.client().await;
    let user = UserId::parse("reset").unwrap();
    for (key, status) in &second_answers {
        let id = new_order_id(&user, Some(&IdempotencyKey::parse(key).unwrap()));
        let billed: Option<String> = client
            .query_opt(
                "SELECT total_amount::text FROM orders WHERE order_id = $1",
                &[&id],
            )
            .await
            .unwrap()
            .map(|row| row.get(0));
        match status {
            202 => assert_eq!(
                billed.as_deref(),
                Some("20.00"),
                "{key}: answered 202 for 20.00"
            ),
            409 | 422 => assert_ne!(
                billed.as_deref(),
                Some("20.00"),
                "{key}: refused yet billed"
            ),
            other => panic!("{key}: {other}"),
        }
    }
    let count = |wanted: u16| second_answers.iter().filter(|(_, s)| *s == wanted).count();
    println!(
        "second payloads: {} x 202, {} x 409, {} x 422",
        count(202),
        count(409),
        count(422)
    );
    platform.stop_all().await;
}

#[tokio::test]
async fn the_catalogue_cache_holds_the_memory_it_is_given_whatever_the_queries() {
    let mut platform = Platform::start().await;
    platform
        .restart_gateway_with(&[
            ("CATALOGUE_CACHE_MB", "4"),
            ("CATALOGUE_CACHE_TTL_MS", "600000"),
        ])
        .await;
    let description = "d".repeat(5000);
    for i in 0..100 {
        let created = platform
            .http
            .post(format!("{}/api/movies", platform.gateway_url))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "title": format!("Long {i}"), "description": description }))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
    }
    let get = |query: String| {
        let (http, url) = (platform.http.clone(), platform.gateway_url.clone());
        async move {
            let answer = http
                .get(format!("{url}/api/movies?{query}"))
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 200);
            answer.bytes().await.unwrap().len()
        }
    };
    // Warm up (allocator, pools), then measure: every query a new key, big pages and small.
    for i in 0..20 {
        get(format!("limit=100&warm={i}")).await;
    }
    let gateway = platform.gateway.as_ref().unwrap();
    let before = gateway.rss_kib();
    let mut sent = 0;
    for i in 0..300 {
        sent += get(format!("limit=100&big={i}")).await;
        sent += get(format!("limit=1&small={i}")).await;
    }
    let grown_mib = gateway.rss_kib().saturating_sub(before) / 1024;
    let scrape = platform
        .http
        .get(format!("{}/metrics", platform.gateway_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let held = test_support::metric(&scrape, "gateway_catalogue_cache_bytes");
    eprintln!(
        "{} MiB of pages answered, {held} bytes held by a 4 MiB cache; the gateway grew {grown_mib} MiB",
        sent / (1024 * 1024)
    );
    assert!(
        held <= 4.0 * 1024.0 * 1024.0,
        "the cache holds {held} bytes"
    );
    // Hundreds of MiB answered: the process grows by the cache and the allocator's slack,
    // not by what went through it.
    assert!(
        grown_mib < 48,
        "the gateway grew {grown_mib} MiB behind a 4 MiB cache"
    );
    platform.stop_all().await;
}
