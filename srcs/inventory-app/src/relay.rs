//! The outbox relay: publishes the change events that writes leave in `catalogue_outbox` to the
//! catalogue's topic exchange, with publisher confirms, and deletes each row only once the
//! broker has confirmed its event. A crash after the publish and before the delete publishes it
//! again (at-least-once: subscribers drop repeats by `event_id`). With several inventory
//! instances, one relays at a time (a transaction-level advisory lock, [`RELAY_LOCK`]): side by
//! side, two would publish one movie's events out of order (seen: version 543 before 475).
//!
//! A write wakes the relay at once ([`Wake`]); a pass every second picks up whatever a crashed
//! or stopped instance left. While the broker is unreachable the rows wait, and writes go on.
//! An event the broker refuses (nack) is tried [`PARK_AFTER`] times, then parked (left in the
//! table, skipped); between tries it waits (`retry_at`, [`FIRST_RETRY_MS`], doubling) out of the
//! way: the events after it go on at once, so that one subscriber's full queue cannot hold up
//! the feed for the others. A retried event may then arrive after a later version of its movie
//! (subscribers compare `movie_version`).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use common::{
    amqp::{self, AmqpError, BrokerNode},
    backoff::Backoff,
    catalogue_event::CatalogueEvent,
    metrics::Metrics,
    telemetry::error_chain,
};
use deadpool_postgres::Pool;
use lapin::{options::BasicPublishOptions, Channel, Connection};
use prometheus::{IntCounter, IntGauge};
use tokio::{sync::Notify, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::configuration::EventSettings;

/// Events published per transaction.
const BATCH: i64 = 256;
/// The pass that picks up rows no wake announced (another instance's, or a crashed one's).
const POLL_EVERY: Duration = Duration::from_secs(1);
/// How long a batch the database refused waits before the next try.
const DATABASE_RETRY: Duration = Duration::from_secs(1);
/// A connection that lasted this long resets the reconnect backoff.
const STABLE_CONNECTION: Duration = Duration::from_secs(10);
/// Refusals (nacks) after which an event is parked.
const PARK_AFTER: i32 = 5;
/// The wait after an event's first refusal; it doubles with each (1, 2, 4, 8 s: parked after
/// about 15 s).
const FIRST_RETRY_MS: i32 = 1_000;
/// How often the outbox's rows are counted for the gauges.
const COUNT_EVERY: Duration = Duration::from_secs(5);
/// The advisory lock a batch holds, so that the instances' relays take turns (an arbitrary
/// key, beside the migrations' `0x1A7E_0001`).
const RELAY_LOCK: i64 = 0x1A7E_0011;
/// How soon a relay that found another instance's batch in progress looks again.
const OTHER_INSTANCE_RETRY: Duration = Duration::from_millis(20);

/// Tells the relay that a write committed an event.
#[derive(Clone, Default)]
pub(crate) struct Wake(Arc<Notify>);

impl Wake {
    pub(crate) fn committed(&self) {
        // A permit is kept if the relay is busy: the wake is never lost.
        self.0.notify_one();
    }
}

#[derive(Clone)]
struct RelayMetrics {
    published: IntCounter,
    connected: IntGauge,
    waiting: IntGauge,
    parked: IntGauge,
}

/// The running relay.
pub(crate) struct Relay {
    task: JoinHandle<()>,
    shutdown: CancellationToken,
}

impl Relay {
    /// Starts relaying; the first connection is made in the background (inventory serves
    /// whether or not the broker is up).
    pub(crate) fn start(
        settings: EventSettings,
        pool: Pool,
        wake: Wake,
        metrics: &Metrics,
    ) -> Self {
        let metrics = RelayMetrics {
            published: metrics.counter(
                "events_published_total",
                "Catalogue change events published to the broker (confirmed).",
            ),
            connected: metrics.gauge(
                "event_relay_connected",
                "1 while the outbox relay is connected to the broker.",
            ),
            waiting: metrics.gauge(
                "outbox_waiting_events",
                "Change events in the outbox waiting to be published (counted every 5 s).",
            ),
            parked: metrics.gauge(
                "outbox_parked_events",
                "Change events the broker refused again and again, parked in the outbox (counted every 5 s).",
            ),
        };
        let shutdown = CancellationToken::new();
        tokio::spawn(count_rows(pool.clone(), metrics.clone(), shutdown.clone()));
        let task = tokio::spawn(run(settings, pool, wake, metrics, shutdown.clone()));
        Self { task, shutdown }
    }

    /// Stops after the batch in progress (its rows are deleted if confirmed, kept otherwise).
    pub(crate) async fn stop(self, timeout: Duration) {
        self.shutdown.cancel();
        let mut task = self.task;
        if tokio::time::timeout(timeout, &mut task).await.is_err() {
            log::warn!("the outbox relay did not stop within {timeout:?}; its rows stay for the next start");
            task.abort();
        }
    }
}

async fn run(
    settings: EventSettings,
    pool: Pool,
    wake: Wake,
    metrics: RelayMetrics,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let connecting = tokio::select! {
            connected = connect(&settings) => connected,
            () = shutdown.cancelled() => return,
        };
        match connecting {
            Ok((connection, channel, node)) => {
                let connected_at = Instant::now();
                log::info!(
                    "outbox relay connected to the broker (node {}); publishing to exchange {}",
                    node.address(),
                    settings.exchange
                );
                metrics.connected.set(1);
                let reason =
                    relay_while_connected(&settings, &pool, &channel, &wake, &metrics, &shutdown)
                        .await;
                metrics.connected.set(0);
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    connection.close(200, "closing".into()),
                )
                .await;
                match reason {
                    None => return,
                    Some(reason) => {
                        log::warn!("outbox relay lost the broker ({reason}); reconnecting")
                    }
                }
                if connected_at.elapsed() >= STABLE_CONNECTION {
                    backoff.reset();
                }
            }
            Err(e) => log::warn!(
                "outbox relay cannot connect to the broker: {}",
                error_chain(&e)
            ),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff.next_delay()) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

async fn connect(settings: &EventSettings) -> Result<(Connection, Channel, BrokerNode), AmqpError> {
    amqp::open_confirming_channel(
        &settings.brokers,
        "inventory-app outbox relay",
        amqp::Topology::CatalogueEvents(&settings.exchange),
        settings.connect_timeout,
    )
    .await
}

/// Relays until the connection fails (its reason) or shutdown (`None`).
async fn relay_while_connected(
    settings: &EventSettings,
    pool: &Pool,
    channel: &Channel,
    wake: &Wake,
    metrics: &RelayMetrics,
    shutdown: &CancellationToken,
) -> Option<String> {
    loop {
        match relay_batch(settings, pool, channel).await {
            // Another instance is relaying: its batch may not include what woke this one.
            Ok(None) => {
                tokio::select! {
                    () = tokio::time::sleep(OTHER_INSTANCE_RETRY) => continue,
                    () = shutdown.cancelled() => return None,
                }
            }
            Ok(Some(Batch { taken, published })) => {
                metrics.published.inc_by(published as u64);
                if published < taken {
                    log::warn!(
                        "outbox relay: the broker refused {} of {taken} events (a subscriber's queue full with reject-publish?); each is tried {PARK_AFTER} times, then parked",
                        taken - published
                    );
                }
                if taken as i64 == BATCH && !shutdown.is_cancelled() {
                    continue;
                }
            }
            Err(BatchError::Broker(e)) => return Some(e),
            Err(BatchError::Database(e)) => {
                log::warn!("outbox relay: the database refused a batch: {e}");
                tokio::select! {
                    () = tokio::time::sleep(DATABASE_RETRY) => continue,
                    () = shutdown.cancelled() => return None,
                }
            }
        }
        tokio::select! {
            () = wake.0.notified() => {}
            () = tokio::time::sleep(POLL_EVERY) => {}
            () = shutdown.cancelled() => return None,
        }
    }
}

/// Why a batch failed, said in full.
enum BatchError {
    Database(String),
    Broker(String),
}

impl From<tokio_postgres::Error> for BatchError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Database(error_chain(&e))
    }
}

/// What a batch came to: rows taken, events published (the others were refused).
struct Batch {
    taken: usize,
    published: usize,
}

/// One transaction: the oldest rows not parked, published and confirmed; the confirmed
/// deleted, the refused counted (and so parked at the last attempt). `None` if another
/// instance's batch is in progress.
async fn relay_batch(
    settings: &EventSettings,
    pool: &Pool,
    channel: &Channel,
) -> Result<Option<Batch>, BatchError> {
    let mut client = pool
        .get()
        .await
        .map_err(|e| BatchError::Database(error_chain(&e)))?;
    let tx = client.transaction().await?;
    let locked = tx
        .prepare_cached("SELECT pg_try_advisory_xact_lock($1)")
        .await?;
    if !tx
        .query_one(&locked, &[&RELAY_LOCK])
        .await?
        .get::<_, bool>(0)
    {
        return Ok(None);
    }
    let statement = tx
        .prepare_cached(
            "SELECT id, event_id, routing_key, occurred_at, body FROM catalogue_outbox
             WHERE attempts < $2 AND (retry_at IS NULL OR retry_at <= now())
             ORDER BY id LIMIT $1",
        )
        .await?;
    let rows = tx.query(&statement, &[&BATCH, &PARK_AFTER]).await?;
    if rows.is_empty() {
        return Ok(Some(Batch {
            taken: 0,
            published: 0,
        }));
    }
    let broker = |e: AmqpError| BatchError::Broker(error_chain(&e));
    let mut confirms = Vec::with_capacity(rows.len());
    for row in &rows {
        let event_id: Uuid = row.get("event_id");
        let occurred_at: DateTime<Utc> = row.get("occurred_at");
        let routing_key: &str = row.get("routing_key");
        let body: &str = row.get("body");
        let publish = channel.basic_publish(
            settings.exchange.as_str().into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            CatalogueEvent::properties(event_id, occurred_at),
        );
        confirms.push(
            amqp::within(settings.publish_timeout, publish)
                .await
                .map_err(broker)?,
        );
    }
    let (mut published, mut refused) = (Vec::new(), Vec::new());
    for (row, confirm) in rows.iter().zip(confirms) {
        let confirmation = amqp::within(settings.publish_timeout, confirm)
            .await
            .map_err(broker)?;
        let id: i64 = row.get("id");
        if confirmation.is_ack() {
            published.push(id);
        } else {
            refused.push(id);
        }
    }
    let statement = tx
        .prepare_cached("DELETE FROM catalogue_outbox WHERE id = ANY($1)")
        .await?;
    tx.execute(&statement, &[&published]).await?;
    if !refused.is_empty() {
        let statement = tx
            .prepare_cached(
                "UPDATE catalogue_outbox
                 SET attempts = attempts + 1, last_error = 'refused by the broker (nack)',
                     retry_at = now() + make_interval(secs => $2::INT4 * 2 ^ attempts / 1000.0)
                 WHERE id = ANY($1)",
            )
            .await?;
        tx.execute(&statement, &[&refused, &FIRST_RETRY_MS]).await?;
    }
    tx.commit().await?;
    Ok(Some(Batch {
        taken: rows.len(),
        published: published.len(),
    }))
}

/// Keeps the waiting and parked gauges up to date, whatever the broker's state.
async fn count_rows(pool: Pool, metrics: RelayMetrics, shutdown: CancellationToken) {
    loop {
        let counted = async {
            let client = pool.get().await.ok()?;
            let row = client
                .query_one(
                    "SELECT count(*) FILTER (WHERE attempts < $1) AS waiting,
                            count(*) FILTER (WHERE attempts >= $1) AS parked
                     FROM catalogue_outbox",
                    &[&PARK_AFTER],
                )
                .await
                .ok()?;
            Some((row.get::<_, i64>("waiting"), row.get::<_, i64>("parked")))
        };
        if let Some((waiting, parked)) = counted.await {
            metrics.waiting.set(waiting);
            metrics.parked.set(parked);
        }
        tokio::select! {
            () = tokio::time::sleep(COUNT_EVERY) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
