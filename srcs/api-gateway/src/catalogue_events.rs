//! The subscription to the catalogue's change events, which keeps the cache honest: each event
//! invalidates what it makes stale. A queue of this gateway's own (exclusive, gone with the
//! connection) is bound to every event; a lost connection is replaced with backoff, and every
//! new subscription invalidates the whole cache, since events may have been missed meanwhile.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use common::{
    amqp::{self, AmqpError, BrokerNodes, Topology},
    backoff::Backoff,
    catalogue_event::{self, CatalogueEvent},
    metrics::Metrics,
    telemetry::error_chain,
};
use futures_util::StreamExt;
use lapin::{Connection, Consumer};
use prometheus::{IntCounterVec, IntGauge};
use tokio_util::sync::CancellationToken;

use crate::catalogue_cache::{CatalogueCache, Change};

/// A subscription that lasted this long resets the reconnect backoff.
const STABLE_CONNECTION: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub(crate) struct SubscriptionSettings {
    pub(crate) brokers: BrokerNodes,
    pub(crate) exchange: String,
    pub(crate) connect_timeout: Duration,
}

#[derive(Clone)]
struct SubscriptionMetrics {
    connected: IntGauge,
    events: IntCounterVec,
}

/// Starts the subscription in the background; it ends when `shutdown` is cancelled.
pub(crate) fn subscribe(
    settings: SubscriptionSettings,
    cache: Arc<CatalogueCache>,
    metrics: &Metrics,
    shutdown: CancellationToken,
) {
    let metrics = SubscriptionMetrics {
        connected: metrics.gauge(
            "catalogue_events_subscribed",
            "1 while the gateway receives the catalogue's change events (its cache is then invalidated by them; otherwise only its TTL bounds staleness).",
        ),
        events: metrics.counter_vec(
            "catalogue_events_received_total",
            "Catalogue change events received, by type (`undecodable` for messages that are no event).",
            &["type"],
        ),
    };
    tokio::spawn(run(settings, cache, metrics, shutdown));
}

async fn run(
    settings: SubscriptionSettings,
    cache: Arc<CatalogueCache>,
    metrics: SubscriptionMetrics,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let subscribing = tokio::select! {
            subscribed = start(&settings) => subscribed,
            () = shutdown.cancelled() => return,
        };
        match subscribing {
            Ok((connection, consumer)) => {
                let subscribed_at = Instant::now();
                // Whatever changed while no events came is unknown: start afresh.
                cache.invalidate(Change::Everything);
                metrics.connected.set(1);
                log::info!(
                    "subscribed to the catalogue's change events (exchange {})",
                    settings.exchange
                );
                let reason = receive(consumer, &cache, &metrics, &shutdown).await;
                metrics.connected.set(0);
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    connection.close(200, "closing".into()),
                )
                .await;
                match reason {
                    None => return,
                    Some(reason) => log::warn!(
                        "lost the catalogue's change events ({reason}); cached answers now live at most their TTL; resubscribing"
                    ),
                }
                if subscribed_at.elapsed() >= STABLE_CONNECTION {
                    backoff.reset();
                }
            }
            Err(e) => log::warn!(
                "cannot subscribe to the catalogue's change events: {}",
                error_chain(&e)
            ),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff.next_delay()) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Connects, and consumes a queue of its own bound to every event.
async fn start(settings: &SubscriptionSettings) -> Result<(Connection, Consumer), AmqpError> {
    let (connection, channel, _) = amqp::open_channel(
        &settings.brokers,
        "api-gateway catalogue events",
        Topology::CatalogueEvents(&settings.exchange),
        settings.connect_timeout,
    )
    .await?;
    // Events are hints to forget: one lost with the connection is covered by the
    // invalidation at resubscription.
    let tag = amqp::consumer_tag("gateway-cache");
    let subscribe = catalogue_event::subscribe_while_connected(&channel, &settings.exchange, &tag);
    match amqp::within(settings.connect_timeout, subscribe).await {
        Ok(consumer) => Ok((connection, consumer)),
        Err(e) => {
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                connection.close(200, "giving up".into()),
            )
            .await;
            Err(e)
        }
    }
}

/// Applies events until the consumer ends (its reason) or shutdown (`None`).
async fn receive(
    mut consumer: Consumer,
    cache: &CatalogueCache,
    metrics: &SubscriptionMetrics,
    shutdown: &CancellationToken,
) -> Option<String> {
    loop {
        let delivery = tokio::select! {
            () = shutdown.cancelled() => return None,
            delivery = consumer.next() => delivery,
        };
        let delivery = match delivery {
            None => return Some("the subscription ended".to_owned()),
            Some(Err(e)) => return Some(error_chain(&e)),
            Some(Ok(delivery)) => delivery,
        };
        match CatalogueEvent::from_amqp(&delivery.properties, &delivery.data) {
            Ok(event) => {
                metrics
                    .events
                    .with_label_values(&[event.change.routing_key()])
                    .inc();
                cache.invalidate(match event.change.movie_id() {
                    Some(id) => Change::Movie(id),
                    None => Change::Everything,
                });
            }
            Err(e) => {
                // Something changed that this gateway cannot read: forget everything.
                metrics.events.with_label_values(&["undecodable"]).inc();
                log::warn!(
                    "a catalogue event that does not decode ({e}); invalidating the whole cache"
                );
                cache.invalidate(Change::Everything);
            }
        }
    }
}
