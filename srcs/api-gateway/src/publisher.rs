//! Publishing orders with publisher confirms, over a supervised AMQP connection.
//!
//! A background task owns the connection: it connects (with backoff), declares the topology,
//! puts the channel in confirm mode and hands it out; when the connection fails it withdraws
//! the channel and reconnects. Once the gateway is past its start, requests never wait for a
//! connection: with none, they are answered 503 at once. Just after a start (a restart, with
//! clients waiting in the kept listening socket's backlog) they wait for the first connection,
//! for at most the connect timeout.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use common::{
    amqp::{self, BrokerNode, BrokerNodes, OrderQueue},
    backoff::Backoff,
    order::message::OrderEnvelope,
    telemetry::error_chain,
};
use futures_util::StreamExt;
use lapin::{options::BasicPublishOptions, Channel, Connection, Event};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::metrics::PublishMetrics;

#[derive(Debug, thiserror::Error)]
pub(crate) enum PublishError {
    #[error("not connected to the broker")]
    NotConnected,
    #[error("the broker did not confirm within {0:?}")]
    Timeout(Duration),
    #[error("the broker refused the message (nack)")]
    Nacked,
    #[error("the broker could not route the message: {0}")]
    Unroutable(String),
    #[error("AMQP")]
    Broker(#[from] lapin::Error),
}

/// Connection settings for the publisher.
#[derive(Debug, Clone)]
pub(crate) struct PublisherSettings {
    pub(crate) brokers: BrokerNodes,
    pub(crate) queue: OrderQueue,
    pub(crate) connect_timeout: Duration,
    pub(crate) publish_timeout: Duration,
}

/// Cheap to clone; every clone publishes on the one supervised channel.
#[derive(Clone)]
pub(crate) struct OrderPublisher {
    channel: watch::Receiver<Option<Channel>>,
    /// The broker node the channel is to, while connected.
    node: Arc<Mutex<Option<BrokerNode>>>,
    /// Tells the supervisor a publish failed, so it checks the connection (and the topology).
    trouble: mpsc::Sender<Trouble>,
    queue: OrderQueue,
    publish_timeout: Duration,
    /// Until then, a publish without a connection waits for the first one...
    start_up_until: Instant,
    /// ...unless there has been one: a lost connection is answered 503 at once.
    connected_once: Arc<AtomicBool>,
    shutdown: CancellationToken,
    metrics: PublishMetrics,
}

impl OrderPublisher {
    /// Starts the supervisor; the publisher is usable at once (answering `NotConnected` until
    /// the first connection is up).
    pub(crate) fn start(settings: PublisherSettings, metrics: PublishMetrics) -> Self {
        let (channel_tx, channel) = watch::channel(None);
        let node = Arc::new(Mutex::new(None));
        let (trouble, trouble_rx) = mpsc::channel(1);
        let shutdown = CancellationToken::new();
        let connected_once = Arc::new(AtomicBool::new(false));
        tokio::spawn(supervise(
            settings.clone(),
            channel_tx,
            node.clone(),
            connected_once.clone(),
            trouble_rx,
            shutdown.clone(),
            metrics.clone(),
        ));
        Self {
            channel,
            node,
            trouble,
            queue: settings.queue,
            publish_timeout: settings.publish_timeout,
            start_up_until: Instant::now() + settings.connect_timeout,
            connected_once,
            shutdown,
            metrics,
        }
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.channel.borrow().is_some()
    }

    /// The broker node it is connected to (`host:port`), if connected.
    pub(crate) fn connected_node(&self) -> Option<String> {
        let node = self.node.lock().expect("no panics while holding the lock");
        node.as_ref().map(|node| node.address().to_owned())
    }

    /// The channel once connected, if the gateway is still starting and has never been
    /// connected; `None` at once otherwise.
    async fn first_connection(&self) -> Option<Channel> {
        let wait = self
            .start_up_until
            .saturating_duration_since(Instant::now());
        if wait.is_zero() || self.connected_once.load(Ordering::SeqCst) {
            return None;
        }
        let mut channel = self.channel.clone();
        let connected = tokio::time::timeout(wait, channel.wait_for(Option::is_some)).await;
        match connected {
            Ok(Ok(channel)) => channel.clone(),
            _ => None,
        }
    }

    /// Publishes persistently and returns once the broker has confirmed the message.
    pub(crate) async fn publish(&self, order: &OrderEnvelope) -> Result<(), PublishError> {
        let result = self.try_publish(order).await;
        let outcome = match &result {
            Ok(()) => "confirmed",
            Err(PublishError::NotConnected) => "not_connected",
            Err(PublishError::Timeout(_)) => "timeout",
            Err(PublishError::Nacked) => "nacked",
            Err(PublishError::Unroutable(_)) => "unroutable",
            Err(PublishError::Broker(_)) => "error",
        };
        self.metrics.orders.with_label_values(&[outcome]).inc();
        result
    }

    async fn try_publish(&self, order: &OrderEnvelope) -> Result<(), PublishError> {
        let connected = self.channel.borrow().clone();
        let channel = match connected {
            Some(channel) => channel,
            None => self
                .first_connection()
                .await
                .ok_or(PublishError::NotConnected)?,
        };
        let timer = self.metrics.confirm_duration.start_timer();
        let (body, properties) = order.to_amqp();
        let publish = async {
            let confirm = channel
                .basic_publish(
                    "".into(),
                    self.queue.name().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &body,
                    properties,
                )
                .await?;
            confirm.await
        };
        let result = match tokio::time::timeout(self.publish_timeout, publish).await {
            Err(_) => Err(PublishError::Timeout(self.publish_timeout)),
            Ok(Err(e)) => Err(PublishError::Broker(e)),
            Ok(Ok(confirmation)) if confirmation.is_nack() => Err(PublishError::Nacked),
            Ok(Ok(confirmation)) if !confirmation.is_ack() => Err(PublishError::Nacked),
            Ok(Ok(confirmation)) => match confirmation.take_message() {
                Some(returned) => Err(PublishError::Unroutable(returned.reply_text.to_string())),
                None => Ok(()),
            },
        };
        if let Err(e) = &result {
            let trouble = match e {
                PublishError::Nacked | PublishError::Timeout(_) => Trouble::Unconfirmed,
                _ => Trouble::Failed,
            };
            // Full means the supervisor already has a report to look at.
            let _ = self.trouble.try_send(trouble);
        } else {
            timer.observe_duration();
        }
        result
    }

    /// Stops the supervisor and closes the connection.
    pub(crate) fn close(&self) {
        self.shutdown.cancel();
    }
}

/// Why a publish failed, as the supervisor sees it.
#[derive(Debug, Clone, Copy)]
enum Trouble {
    /// Nacked or not confirmed in time. A channel opened while its node still counted a dead
    /// node as the queue's leader was seen nacking every publish for over a minute after a new
    /// leader was elected (RabbitMQ 3.10): a new connection and channel publish normally.
    Unconfirmed,
    /// Anything else: the channel may be closed, or the queue deleted.
    Failed,
}

/// A connection that lasted this long resets the reconnect backoff: one that keeps failing at
/// once (every publish nacked) is replaced at a slowing pace, not in a tight loop.
const STABLE_CONNECTION: Duration = Duration::from_secs(10);

async fn supervise(
    settings: PublisherSettings,
    channel_tx: watch::Sender<Option<Channel>>,
    node_in_use: Arc<Mutex<Option<BrokerNode>>>,
    connected_once: Arc<AtomicBool>,
    mut trouble: mpsc::Receiver<Trouble>,
    shutdown: CancellationToken,
    metrics: PublishMetrics,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        match connect(&settings).await {
            Ok((connection, channel, node)) => {
                let connected_at = Instant::now();
                log::info!(
                    "connected to the broker (node {}); publishing orders to queue {}",
                    node.address(),
                    settings.queue.name()
                );
                connected_once.store(true, Ordering::SeqCst);
                metrics.broker_node.set(Some(&node));
                *node_in_use
                    .lock()
                    .expect("no panics while holding the lock") = Some(node);
                channel_tx.send_replace(Some(channel.clone()));
                metrics.broker_connected.set(1);
                let reason =
                    watch_connection(&settings, &connection, &channel, &mut trouble, &shutdown)
                        .await;
                channel_tx.send_replace(None);
                metrics.broker_connected.set(0);
                metrics.broker_node.set(None);
                *node_in_use
                    .lock()
                    .expect("no panics while holding the lock") = None;
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    connection.close(200, "closing".into()),
                )
                .await;
                if connected_at.elapsed() >= STABLE_CONNECTION {
                    backoff.reset();
                }
                match reason {
                    None => {
                        log::info!("order publisher stopped");
                        return;
                    }
                    Some(reason) => log::warn!("lost the broker ({reason}); reconnecting"),
                }
            }
            Err(e) => log::warn!("cannot connect to the broker: {}", error_chain(&e)),
        }
        let delay = backoff.next_delay();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

async fn connect(
    settings: &PublisherSettings,
) -> Result<(Connection, Channel, BrokerNode), amqp::AmqpError> {
    amqp::open_confirming_channel(
        &settings.brokers,
        "api-gateway",
        amqp::Topology::Orders(&settings.queue),
        settings.connect_timeout,
    )
    .await
}

/// Returns why the connection must be replaced, or `None` on shutdown.
async fn watch_connection(
    settings: &PublisherSettings,
    connection: &Connection,
    channel: &Channel,
    trouble: &mut mpsc::Receiver<Trouble>,
    shutdown: &CancellationToken,
) -> Option<String> {
    let mut events = connection.events_listener();
    // Reports about the connection this one replaces.
    while trouble.try_recv().is_ok() {}
    // A safety net for failures that raise no event (a channel closed by the broker).
    let mut check = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return None,
            event = events.next() => match event {
                Some(Event::Error(e)) => return Some(error_chain(&e)),
                None => return Some("connection closed".to_owned()),
                Some(_) => {}
            },
            _ = check.tick() => {}
            Some(report) = trouble.recv() => match report {
                Trouble::Unconfirmed => {
                    return Some("a publish was not confirmed: replacing the connection".to_owned());
                }
                // If the channel is fine, the queue may have been deleted; declaring it again
                // is harmless and restores routing.
                Trouble::Failed if channel.status().connected() => {
                    let declare = settings.queue.declare(channel);
                    match tokio::time::timeout(settings.connect_timeout, declare).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Some(format!("re-declaring the topology failed: {}", error_chain(&e))),
                        Err(_) => return Some("the broker did not answer a re-declaration".to_owned()),
                    }
                }
                Trouble::Failed => {}
            },
        }
        if !connection.status().connected() || !channel.status().connected() {
            return Some("channel or connection closed".to_owned());
        }
    }
}
