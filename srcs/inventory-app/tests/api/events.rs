//! Catalogue change events: every committed change is published through the outbox, nothing
//! else is, and nothing committed is lost while the broker is away or inventory stops.

use std::time::Duration;

use common::catalogue_event::{CatalogueChange, CatalogueEvent};
use serde_json::{json, Value};
use test_support::{eventually, unique_exchange, EventTap};

use crate::helpers::{spawn_app_with, TestApp};

const WAIT: Duration = Duration::from_secs(10);

async fn next_event(tap: &mut EventTap) -> (String, CatalogueEvent) {
    let (routing_key, event, message_id) = tap.next(WAIT).await.expect("an event");
    assert_eq!(message_id, Some(event.event_id.to_string()));
    assert_eq!(routing_key, event.change.routing_key());
    (routing_key, event)
}

/// An inventory publishing to `exchange` through a proxy to the broker, cut: the broker is
/// away until the proxy is restored.
async fn spawn_app_with_the_broker_away(
    exchange: &str,
) -> (test_support::TcpProxy, String, TestApp) {
    let (proxy, url) = test_support::broker_through_proxy().await;
    proxy.cut();
    let app = spawn_app_with(|s| {
        s.events.exchange = exchange.to_owned();
        s.events.brokers = url.parse().unwrap();
    })
    .await;
    (proxy, url, app)
}

async fn outbox_rows(app: &TestApp) -> i64 {
    let client = app.db.client().await;
    client
        .query_one("SELECT count(*) FROM catalogue_outbox", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn every_committed_change_is_published_once_and_nothing_else() {
    let exchange = unique_exchange();
    let mut tap = EventTap::on(&exchange).await;
    let app = spawn_app_with(|s| s.events.exchange = exchange.clone()).await;

    let created = app.create_movie("Alien").await;
    let id = created["id"].as_i64().unwrap();
    let replaced: Value = app
        .http
        .put(app.url(&format!("/api/movies/{id}")))
        .json(&json!({ "title": "Aliens", "release_year": 1986 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Refused writes change nothing and publish nothing.
    let stale = app
        .http
        .put(app.url(&format!("/api/movies/{id}")))
        .header("if-match", "\"1.stale\"")
        .json(&json!({ "title": "Never" }))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 412);
    let missing = app
        .http
        .delete(app.url("/api/movies/999999"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let deleted = app
        .http
        .delete(app.url(&format!("/api/movies/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    app.create_movie("Heat").await;
    app.create_movie("Ran").await;
    let emptied = app
        .http
        .delete(app.url("/api/movies"))
        .send()
        .await
        .unwrap();
    assert_eq!(emptied.status(), 200);
    // Emptying an empty catalogue is no change.
    let emptied_again = app
        .http
        .delete(app.url("/api/movies"))
        .send()
        .await
        .unwrap();
    assert_eq!(emptied_again.status(), 200);

    let (_, event) = next_event(&mut tap).await;
    assert_eq!(
        event.change,
        CatalogueChange::Created {
            movie_id: id,
            movie_version: 1,
            movie: created
        }
    );
    let (_, event) = next_event(&mut tap).await;
    assert_eq!(
        event.change,
        CatalogueChange::Replaced {
            movie_id: id,
            movie_version: 2,
            movie: replaced
        }
    );
    let (_, event) = next_event(&mut tap).await;
    assert_eq!(
        event.change,
        CatalogueChange::Deleted {
            movie_id: id,
            movie_version: 2
        }
    );
    for title in ["Heat", "Ran"] {
        let (key, event) = next_event(&mut tap).await;
        assert_eq!(key, "movie.created");
        let CatalogueChange::Created { movie, .. } = event.change else {
            unreachable!()
        };
        assert_eq!(movie["title"], title);
    }
    let (_, event) = next_event(&mut tap).await;
    assert_eq!(event.change, CatalogueChange::AllDeleted { deleted: 2 });
    assert!(
        tap.next(Duration::from_millis(500)).await.is_none(),
        "no further event"
    );
    assert_eq!(
        outbox_rows(&app).await,
        0,
        "confirmed events leave the outbox"
    );
}

#[tokio::test]
async fn changes_made_while_the_broker_is_away_are_published_when_it_is_back() {
    let exchange = unique_exchange();
    let mut tap = EventTap::on(&exchange).await;
    let (proxy, _, app) = spawn_app_with_the_broker_away(&exchange).await;

    // Writes go on without the broker; their events wait in the outbox.
    for title in ["One", "Two", "Three"] {
        app.create_movie(title).await;
    }
    assert_eq!(outbox_rows(&app).await, 3);
    assert!(tap.next(Duration::from_millis(300)).await.is_none());

    proxy.restore();
    for title in ["One", "Two", "Three"] {
        let (_, event) = next_event(&mut tap).await;
        let CatalogueChange::Created { movie, .. } = event.change else {
            panic!("{event:?}")
        };
        assert_eq!(movie["title"], title, "in commit order");
    }
    eventually(WAIT, "the outbox to empty", || async {
        outbox_rows(&app).await == 0
    })
    .await;
}

/// Another subscriber's queue on `exchange`: one message at most, and publishes refused beyond
/// it (`reject-publish`). Exclusive: it lives as long as the returned channel's connection.
async fn full_subscriber(exchange: &str) -> (lapin::Channel, String) {
    use lapin::{
        options::{QueueBindOptions, QueueDeclareOptions},
        types::{AMQPValue, FieldTable},
    };
    let channel = test_support::amqp_channel().await;
    let mut arguments = FieldTable::default();
    arguments.insert("x-max-length".into(), AMQPValue::LongLongInt(1));
    arguments.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    let full = format!("{exchange}-full");
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(full.as_str().into(), exclusive, arguments)
        .await
        .unwrap();
    channel
        .queue_bind(
            full.as_str().into(),
            exchange.into(),
            "movie.#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    (channel, full)
}

#[tokio::test]
async fn a_subscriber_whose_queue_refuses_events_holds_up_no_one_else() {
    use lapin::options::QueueDeleteOptions;
    let exchange = unique_exchange();
    let mut tap = EventTap::on(&exchange).await;
    let (channel, full) = full_subscriber(&exchange).await;
    let app = spawn_app_with(|s| s.events.exchange = exchange.clone()).await;

    // Every event reaches the tap at once, the refused ones perhaps more than once.
    let mut ids = Vec::new();
    for title in ["One", "Two", "Three"] {
        ids.push(app.create_movie(title).await["id"].as_i64().unwrap());
    }
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 3 {
        let (_, event) = next_event(&mut tap).await;
        seen.insert(event.change.movie_id().unwrap());
    }
    // The two the full queue refused are parked after their attempts; nothing waits.
    let parked = || async {
        let client = app.db.client().await;
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE attempts >= 5), count(*) FILTER (WHERE attempts < 5) FROM catalogue_outbox",
                &[],
            )
            .await
            .unwrap();
        (row.get::<_, i64>(0), row.get::<_, i64>(1))
    };
    eventually(Duration::from_secs(20), "two events parked", || async {
        parked().await == (2, 0)
    })
    .await;
    eventually(Duration::from_secs(10), "the gauge to say so", || async {
        let scrape = app.get("/metrics").await.text().await.unwrap();
        test_support::metric(&scrape, "inventory_outbox_parked_events") == 2.0
    })
    .await;
    // A later change is published at once all the same.
    let started = std::time::Instant::now();
    app.create_movie("Four").await;
    loop {
        let (_, event) = next_event(&mut tap).await;
        if let CatalogueChange::Created { movie, .. } = event.change {
            if movie["title"] == "Four" {
                break;
            }
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Once the subscriber has room, re-armed events go out (README, Operations).
    channel
        .queue_delete(full.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    app.db
        .client()
        .await
        .execute(
            "UPDATE catalogue_outbox SET attempts = 0, retry_at = NULL WHERE attempts >= 5",
            &[],
        )
        .await
        .unwrap();
    eventually(WAIT, "the outbox to empty", || async {
        outbox_rows(&app).await == 0
    })
    .await;
}

#[tokio::test]
async fn while_a_subscriber_refuses_events_a_burst_reaches_the_others_at_once() {
    let exchange = unique_exchange();
    let mut tap = EventTap::on(&exchange).await;
    let (_channel, _full) = full_subscriber(&exchange).await;
    let app = spawn_app_with(|s| s.events.exchange = exchange.clone()).await;

    // More than a relay batch (256), nearly all refused by the full queue: each refused event
    // waits for its retry out of the way, so the later ones are not held up behind it.
    let count = 600;
    let app = &app;
    for chunk in (0..count).collect::<Vec<_>>().chunks(8) {
        let creates = chunk
            .iter()
            .map(|i| async move { app.create_movie(&format!("Burst {i}")).await });
        futures_util::future::join_all(creates).await;
    }
    let written = std::time::Instant::now();
    let mut seen = std::collections::HashSet::new();
    while seen.len() < count {
        let (_, event) = next_event(&mut tap).await;
        seen.insert(event.change.movie_id().unwrap());
    }
    // (One refusal pause per batch, the old way, took over 10 s here: 5 tries a second apart
    // for each batch in turn.)
    assert!(
        written.elapsed() < Duration::from_secs(3),
        "the burst reached the other subscriber {:?} after the last write",
        written.elapsed()
    );
}

#[tokio::test]
async fn two_instances_relaying_one_backlog_publish_each_movie_s_changes_in_order() {
    let exchange = unique_exchange();
    let mut tap = EventTap::on(&exchange).await;
    let (proxy, url, app) = spawn_app_with_the_broker_away(&exchange).await;
    let mut settings = test_support::inventory_settings(&app.db.url);
    settings.events.exchange = exchange.clone();
    settings.events.brokers = url.parse().unwrap();
    let _second =
        test_support::RunningApp::start::<inventory_app::startup::Application>(settings).await;

    // A backlog of several batches while the broker is away: each movie replaced many times.
    let mut ids = Vec::new();
    for title in ["One", "Two", "Three", "Four"] {
        ids.push(app.create_movie(title).await["id"].as_i64().unwrap());
    }
    let rounds = 150;
    for round in 0..rounds {
        for id in &ids {
            let response = app
                .http
                .put(app.url(&format!("/api/movies/{id}")))
                .json(&json!({ "title": format!("Take {round}") }))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
        }
    }
    let expected = ids.len() * (rounds + 1);
    assert_eq!(outbox_rows(&app).await, expected as i64);

    // Both relays take it from here.
    proxy.restore();
    let mut seen = std::collections::HashSet::new();
    let mut last_version = std::collections::HashMap::new();
    while seen.len() < expected {
        let (_, event) = next_event(&mut tap).await;
        if !seen.insert(event.event_id) {
            continue;
        }
        if let CatalogueChange::Replaced {
            movie_id,
            movie_version,
            ..
        } = event.change
        {
            let previous = last_version.insert(movie_id, movie_version).unwrap_or(0);
            assert!(
                movie_version > previous,
                "movie {movie_id}: version {movie_version} published after {previous}"
            );
        }
    }
}
