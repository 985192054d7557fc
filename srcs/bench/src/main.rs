//! Baselines the benchmark compares the platform with, using the same libraries and message
//! contract but none of the services:
//!   bench-baselines proxy LISTEN_ADDR UPSTREAM_URL
//!       a bare actix-web + reqwest forwarder (no middleware, no checks, no metrics): what any
//!       HTTP hop built from the gateway's components costs. Serves until killed.
//!   bench-baselines publish AMQP_URL QUEUE COUNT CONCURRENCY
//!       COUNT order messages with publisher confirms, CONCURRENCY in flight (the limit for
//!       POST /api/billing, and a way to fill a backlog). AMQP_URL may list a cluster's nodes,
//!       as the services' AMQP_URL does; the line names the node that took the messages.
//!   bench-baselines consume AMQP_URL QUEUE COUNT PREFETCH BATCH
//!       COUNT messages off the queue with billing's prefetch, acknowledged BATCH at a time
//!       (one multiple-ack), without decoding or a database: what the broker alone allows a drain.
//!   bench-baselines insert DATABASE_URL COUNT BATCH
//!       COUNT orders into billing's table (migrated first), BATCH rows per statement and commit,
//!       with the same INSERT as billing-app (the limit for its drain).
//!   bench-baselines delete AMQP_URL QUEUE
//!       deletes the queue, its dead-letter queue and exchange (queues made for one run).
//!   bench-baselines hold ADDR PATH COUNT SECONDS
//!       opens COUNT keep-alive connections to ADDR, sends one GET PATH on each and reads its
//!       answer, then holds them all idle for SECONDS: what an idle client costs a proxy.
//! Each prints one line of figures.

use std::time::{Duration, Instant};

use common::{
    amqp::{BrokerNode, OrderQueue},
    config::Env,
    order::message::OrderEnvelope,
};
use database::{build_pool, DatabaseSettings};
use futures_util::{stream, StreamExt};
use lapin::{
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions,
    },
    types::FieldTable,
};

/// The order every benchmark sends, as the gateway publishes it.
fn order() -> OrderEnvelope {
    OrderEnvelope {
        message: test_support::order_message("bench", "2", "45.00"),
        request_id: None,
        traceparent: None,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1000.0
}

/// A channel on a new connection (kept alive by the caller) to `queue`, declared as the
/// services declare it, on the first node of `url` that answers (returned too).
async fn queue_channel(
    url: &str,
    queue: &str,
) -> (lapin::Connection, lapin::Channel, OrderQueue, BrokerNode) {
    let queue = OrderQueue::new(queue).expect("queue name");
    let brokers = url.parse().expect("an amqp:// URL");
    let (connection, channel, node) = common::amqp::open_channel(
        &brokers,
        "bench",
        common::amqp::Topology::Orders(&queue),
        Duration::from_secs(5),
    )
    .await
    .expect("connect and declare");
    (connection, channel, queue, node)
}

async fn publish(url: &str, queue: &str, count: usize, concurrency: usize) {
    let (_connection, channel, queue, node) = queue_channel(url, queue).await;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    let started = Instant::now();
    let mut latencies: Vec<Duration> = stream::iter(0..count)
        .map(|_| {
            let (channel, queue) = (channel.clone(), queue.clone());
            async move {
                let (body, properties) = order().to_amqp();
                let sent = Instant::now();
                let confirm = channel
                    .basic_publish(
                        "".into(),
                        queue.name().into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..Default::default()
                        },
                        &body,
                        properties,
                    )
                    .await
                    .expect("publish")
                    .await
                    .expect("confirm");
                assert!(confirm.is_ack());
                sent.elapsed()
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "publish count={count} concurrency={concurrency} node={} seconds={:.2} per_second={:.0} p50_ms={:.2} p99_ms={:.2}",
        node.address(),
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99)
    );
}

async fn consume(url: &str, queue: &str, count: usize, prefetch: u16, batch: usize) {
    let (_connection, channel, queue, _) = queue_channel(url, queue).await;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = channel
        .basic_consume(
            queue.name().into(),
            "bench-consume".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let started = Instant::now();
    let mut unacked = 0;
    for received in 1..=count {
        let delivery = consumer
            .next()
            .await
            .expect("a delivery")
            .expect("no consumer error");
        unacked += 1;
        if unacked == batch || received == count {
            channel
                .basic_ack(delivery.delivery_tag, BasicAckOptions { multiple: true })
                .await
                .expect("ack");
            unacked = 0;
        }
    }
    let elapsed = started.elapsed();
    println!(
        "consume count={count} prefetch={prefetch} batch={batch} seconds={:.2} per_second={:.0}",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64()
    );
}

/// Declaring first (a no-op if the queue exists) reuses the connecting of the other commands.
async fn delete(url: &str, queue: &str) {
    let (_connection, channel, queue, _) = queue_channel(url, queue).await;
    queue.delete(&channel).await.expect("delete");
}

async fn insert(url: &str, count: usize, batch: usize) {
    let settings =
        DatabaseSettings::read(&Env::given([("DATABASE_URL", url)])).expect("database URL");
    let pool = build_pool(&settings, "bench");
    billing_app::store::migrate(&pool).await.expect("migrate");
    let client = pool.get().await.expect("connection");
    let started = Instant::now();
    let mut done = 0;
    while done < count {
        let size = batch.min(count - done);
        let orders: Vec<_> = (0..size).map(|_| order()).collect();
        billing_app::store::insert_orders(&**client, &orders)
            .await
            .expect("insert");
        done += size;
    }
    let elapsed = started.elapsed();
    println!(
        "insert count={count} batch={batch} seconds={:.2} per_second={:.0}",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64()
    );
}

/// Forwards every request's method, path, query and body; answers with the upstream's status,
/// Content-Type and body.
async fn proxy(listen: &str, upstream: String) {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    let upstream = web::Data::new(upstream);
    HttpServer::new(move || {
        // One client per worker, as in the gateway.
        let http = web::Data::new(reqwest::Client::new());
        App::new()
            .app_data(upstream.clone())
            .app_data(http)
            .default_service(web::to(
                |req: HttpRequest,
                 body: web::Bytes,
                 upstream: web::Data<String>,
                 http: web::Data<reqwest::Client>| async move {
                    let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
                    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
                        .expect("a valid method");
                    let answer = http
                        .request(method, format!("{}{path}", upstream.as_str()))
                        .body(body)
                        .send()
                        .await;
                    let Ok(answer) = answer else {
                        return HttpResponse::BadGateway().finish();
                    };
                    let status =
                        actix_web::http::StatusCode::from_u16(answer.status().as_u16()).unwrap();
                    let content_type = answer.headers().get("content-type").cloned();
                    let mut response = HttpResponse::build(status);
                    if let Some(value) = content_type {
                        response.insert_header(("content-type", value.as_bytes()));
                    }
                    match answer.bytes().await {
                        Ok(bytes) => response.body(bytes),
                        Err(_) => HttpResponse::BadGateway().finish(),
                    }
                },
            ))
    })
    .bind(listen)
    .expect("bind")
    .run()
    .await
    .expect("serve");
}

/// `count` idle keep-alive connections, each after one answered GET, held for `seconds`; prints
/// "holding N idle connections" once they are all open (N may fall short: the line says).
async fn hold(addr: &str, path: &str, count: usize, seconds: u64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n");
    let open_one = |_| {
        let request = request.clone();
        async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
            stream.write_all(request.as_bytes()).await.ok()?;
            // The head, then as much body as its Content-Length says.
            let mut received = Vec::new();
            let mut buffer = [0u8; 4096];
            loop {
                let n = stream.read(&mut buffer).await.ok()?;
                if n == 0 {
                    return None;
                }
                received.extend_from_slice(&buffer[..n]);
                let text = String::from_utf8_lossy(&received);
                let Some(end) = text.find("\r\n\r\n") else {
                    continue;
                };
                let length: usize = text[..end]
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                if received.len() >= end + 4 + length {
                    return text.starts_with("HTTP/1.1 200").then_some(stream);
                }
            }
        }
    };
    // A few hundred connects at a time: the listening socket's backlog is not the measure.
    let held: Vec<_> = stream::iter(0..count)
        .map(open_one)
        .buffer_unordered(256)
        .filter_map(|stream| async { stream })
        .collect()
        .await;
    println!("holding {} idle connections", held.len());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let number = |i: usize| {
        args.get(i)
            .and_then(|a| a.parse().ok())
            .expect("a number argument")
    };
    match args.get(1).map(String::as_str) {
        Some("proxy") => proxy(&args[2], args[3].clone()).await,
        Some("publish") => publish(&args[2], &args[3], number(4), number(5)).await,
        Some("consume") => {
            let prefetch = number(5);
            consume(&args[2], &args[3], number(4), prefetch as u16, number(6)).await
        }
        Some("insert") => insert(&args[2], number(3), number(4)).await,
        Some("delete") => delete(&args[2], &args[3]).await,
        Some("hold") => hold(&args[2], &args[3], number(4), number(5) as u64).await,
        _ => {
            eprintln!("usage: bench-baselines proxy LISTEN_ADDR UPSTREAM_URL | publish AMQP_URL QUEUE COUNT CONCURRENCY | consume AMQP_URL QUEUE COUNT PREFETCH BATCH | insert DATABASE_URL COUNT BATCH | delete AMQP_URL QUEUE | hold ADDR PATH COUNT SECONDS");
            std::process::exit(2);
        }
    }
}
