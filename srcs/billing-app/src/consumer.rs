//! The order consumer: supervised (it reconnects to the broker with backoff), batched (orders
//! are written and acknowledged together), pipelined (a batch is written by a task of its own
//! while the next is read and decoded; acknowledgements stay in delivery order), and
//! acknowledging only after the database commit.
//!
//! What can happen to a delivery:
//! - valid: stored (or found already stored), then acknowledged;
//! - can never succeed (not an order, invalid, values the database refuses): copied to the
//!   dead-letter queue with a note of why (see `dead_letter`), then acknowledged; if the copy is
//!   not confirmed, rejected without requeue instead, and the broker moves it there itself;
//! - database unavailable or refusing work (read-only, ...): held unacknowledged while the write
//!   is retried with backoff; on shutdown or a lost channel it returns to the queue for later.
//!
//! On shutdown the consumer is cancelled at once (readiness then says "not consuming"), the
//! deliveries already sent are billed until none has arrived for [`DRAIN_IDLE`], and every call
//! to the broker on the way out has a deadline: a stop never waits on a broker that does not
//! answer. The caller bounds the whole stop as well (`SHUTDOWN_TIMEOUT_MS`).

use std::{collections::VecDeque, time::Duration};

use common::{
    amqp::{self, BrokerNode, BrokerNodes, NodeGauge},
    backoff::Backoff,
    order::message::OrderEnvelope,
    request_id::RequestId,
    telemetry::error_chain,
};
use database::Failure;
use deadpool_postgres::Pool;
use futures_util::{FutureExt, StreamExt};
use lapin::{
    message::Delivery,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
        BasicPublishOptions, BasicQosOptions,
    },
    types::FieldTable,
    Channel, Confirmation, Connection, Consumer,
};
use prometheus::IntGauge;
use tokio_util::sync::CancellationToken;

use crate::{
    configuration::Settings,
    dead_letter::DeadLetterNote,
    metrics::ConsumerMetrics,
    store::{self, StoreError},
};

/// After the consumer is cancelled on shutdown, the deliveries the broker had already sent are
/// still billed; once none has arrived for this long, there are no more.
const DRAIN_IDLE: Duration = Duration::from_secs(1);
/// The longest the way out waits for the broker to answer a cancel or a close.
const BROKER_GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest a copy for the dead-letter queue waits for the broker's confirm before the
/// delivery is rejected instead.
const DEAD_LETTER_CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);
/// Batches being written at once: the database stores one while the session reads and decodes
/// the next (measured in the bench's drain: one alone leaves the database idle meanwhile).
const WRITES_IN_FLIGHT: usize = 2;

/// Whether the consumer is consuming right now, and from which node: for `/ready` and the
/// `consumer_connected` gauge.
#[derive(Clone)]
pub(crate) struct ConsumerStatus {
    /// The broker node it consumes from, while consuming.
    consuming: std::sync::Arc<std::sync::RwLock<Option<BrokerNode>>>,
    gauge: IntGauge,
    node_gauge: NodeGauge,
}

impl ConsumerStatus {
    pub(crate) fn new(metrics: &common::metrics::Metrics, brokers: &BrokerNodes) -> Self {
        Self {
            consuming: std::sync::Arc::default(),
            gauge: metrics.gauge("consumer_connected", "1 while consuming from the broker."),
            node_gauge: NodeGauge::new(metrics, brokers),
        }
    }

    fn set(&self, consuming_from: Option<&BrokerNode>) {
        *self
            .consuming
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = consuming_from.cloned();
        self.gauge.set(i64::from(consuming_from.is_some()));
        self.node_gauge.set(consuming_from);
    }

    pub(crate) fn is_consuming(&self) -> bool {
        self.consuming
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }

    /// The broker node it consumes from (`host:port`), while consuming.
    pub(crate) fn node(&self) -> Option<String> {
        let node = self
            .consuming
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        node.as_ref().map(|node| node.address().to_owned())
    }
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Amqp(#[from] amqp::AmqpError),
    #[error("AMQP")]
    Lapin(#[from] lapin::Error),
    #[error("the broker cancelled the consumer (was the queue deleted?)")]
    CancelledByBroker,
}

impl SessionError {
    /// Whether the connection died on a frame the client library could not parse.
    fn is_unparsable_delivery(&self) -> bool {
        let error = match self {
            Self::Lapin(e) | Self::Amqp(amqp::AmqpError::Lapin(e)) => e,
            _ => return false,
        };
        matches!(error.kind(), lapin::ErrorKind::ParsingError(_))
    }
}

/// How a session takes deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pace {
    /// Up to `BILLING_PREFETCH` deliveries in flight.
    Full,
    /// One delivery in flight: after one the client library could not even parse (AMQP
    /// properties that are not UTF-8, which RabbitMQ lets any producer send). The connection
    /// dies with it and every delivery in flight goes back counted as delivered once more, so at
    /// full pace the orders around it would reach the delivery limit with it. One at a time,
    /// only it does, and the broker moves it to the dead-letter queue. The returned deliveries
    /// come back in no fixed order, so full pace resumes only once `BILLING_PREFETCH` of them
    /// in a row were billed (more than were in flight when it struck) or the queue is empty.
    OneAtATime,
}

/// Retry delay while a delivery that cannot be parsed is walked to its delivery limit: short,
/// since each connection costs only that delivery one attempt.
const UNPARSABLE_RETRY: Duration = Duration::from_millis(200);

/// How a session ended without an error.
enum SessionEnd {
    /// Shutdown.
    Stopped,
    /// A delivery was billed one at a time: full pace again, on a new connection.
    PastTheUnparsable,
}

/// Consumes until `shutdown` is cancelled, reconnecting whenever the broker is lost.
pub(crate) async fn run(
    settings: &Settings,
    pool: &Pool,
    metrics: &ConsumerMetrics,
    status: &ConsumerStatus,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let mut pace = Pace::Full;
    loop {
        let result = session(
            settings,
            pool,
            metrics,
            status,
            &shutdown,
            &mut backoff,
            pace,
        )
        .await;
        status.set(None);
        match result {
            Ok(SessionEnd::Stopped) => return,
            Ok(SessionEnd::PastTheUnparsable) => {
                log::info!(
                    "order consumer: past the delivery that could not be parsed; full pace again"
                );
                pace = Pace::Full;
            }
            Err(e) => {
                let unparsable = e.is_unparsable_delivery();
                if unparsable && pace == Pace::Full {
                    log::warn!(
                        "order consumer: a delivery could not be parsed (AMQP properties that are not UTF-8?); taking deliveries one at a time until it reaches the delivery limit ({}) and goes to the dead-letter queue",
                        amqp::DELIVERY_LIMIT
                    );
                }
                if unparsable {
                    pace = Pace::OneAtATime;
                }
                let delay = if unparsable {
                    UNPARSABLE_RETRY
                } else {
                    backoff.next_delay()
                };
                log::warn!(
                    "order consumer: {}; reconnecting in {delay:?}",
                    error_chain(&e)
                );
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => return,
                }
            }
        }
    }
}

/// One connection's worth of consuming.
async fn session(
    settings: &Settings,
    pool: &Pool,
    metrics: &ConsumerMetrics,
    status: &ConsumerStatus,
    shutdown: &CancellationToken,
    backoff: &mut Backoff,
    pace: Pace,
) -> Result<SessionEnd, SessionError> {
    let prefetch = match pace {
        Pace::Full => settings.prefetch,
        Pace::OneAtATime => 1,
    };
    // A stop while connecting gives up the half-made connection (nothing was delivered yet).
    let (connection, channel, tag, mut consumer, node) = tokio::select! {
        biased;
        () = shutdown.cancelled() => return Ok(SessionEnd::Stopped),
        started = start_consuming(settings, prefetch) => started?,
    };
    backoff.reset();
    status.set(Some(&node));
    let _sampler = BacklogSampler::start(&channel, settings.queue.name(), metrics);
    log::info!(
        "consuming orders from queue {} on broker node {}",
        settings.queue.name(),
        node.address()
    );

    let dead_letters = DeadLetterOutlet::new(settings);
    let billing = Billing {
        channel: &channel,
        dead_letters: &dead_letters,
        pool,
        metrics,
        shutdown,
    };
    let writes_in_flight = match pace {
        Pace::Full => WRITES_IN_FLIGHT,
        Pace::OneAtATime => 1,
    };
    let mut writing: VecDeque<Write> = VecDeque::with_capacity(writes_in_flight);
    let mut draining = false;
    // A batch was left unwritten (shutdown while the database is unavailable): nothing after it
    // may be acknowledged.
    let mut abandoned = false;
    let mut end = SessionEnd::Stopped;
    let mut careful = Careful {
        pace,
        left: usize::from(settings.prefetch),
        channel: &channel,
        settings,
    };
    loop {
        if shutdown.is_cancelled() && !draining {
            status.set(None);
            // No new deliveries; those already sent still arrive and are finished.
            if !cancel_consumer(&channel, &tag).await? {
                break;
            }
            draining = true;
        }
        // Deliveries already here go on at once; otherwise the oldest write is settled before
        // waiting, so that nothing stays unacknowledged while the queue is quiet.
        let ready = if writing.is_empty() {
            None
        } else {
            consumer.next().now_or_never()
        };
        let next = match ready {
            Some(Some(next)) => Some(next),
            // Nothing here yet, or the consumer ended: the writes under way are settled first.
            Some(None) | None if !writing.is_empty() => {
                let oldest = writing.pop_front().expect("a write is in flight");
                let delivered = oldest.delivered;
                if let Outcome::Abandoned = billing.settle(oldest).await? {
                    abandoned = true;
                    break;
                }
                if careful.full_pace_again(delivered, draining).await? {
                    end = SessionEnd::PastTheUnparsable;
                    break;
                }
                continue;
            }
            Some(None) | None if draining => {
                match tokio::time::timeout(DRAIN_IDLE, consumer.next()).await {
                    Ok(next) => next,
                    // Nothing more was on its way.
                    Err(_) => break,
                }
            }
            Some(None) | None => tokio::select! {
                biased;
                () = shutdown.cancelled() => continue,
                next = consumer.next() => next,
            },
        };
        let Some(first) = next else {
            if draining {
                break;
            }
            return Err(SessionError::CancelledByBroker);
        };
        // The broker sends no more than the prefetch allows beyond what the writes hold: a batch
        // that could never fill does not wait out its linger.
        let held: usize = writing.iter().map(|write| write.deliveries.len()).sum();
        let size = settings
            .batch_size
            .min(usize::from(prefetch).saturating_sub(held))
            .max(1);
        let batch = fill_batch(first?, &mut consumer, size, settings.batch_linger).await?;
        let delivered = batch.len();
        metrics.received.inc_by(delivered as u64);
        // Room for this batch's write first: never more than `writes_in_flight` at once. (Its
        // deliveries stay unacknowledged meanwhile, and come back if the session ends here.)
        if writing.len() == writes_in_flight {
            let oldest = writing.pop_front().expect("a write is in flight");
            if let Outcome::Abandoned = billing.settle(oldest).await? {
                abandoned = true;
                break;
            }
        }
        let Some(write) = billing.decode(batch).await? else {
            // All dead-lettered.
            if careful.full_pace_again(delivered, draining).await? {
                end = SessionEnd::PastTheUnparsable;
                break;
            }
            continue;
        };
        writing.push_back(write);
    }
    // Writes still under way: acknowledged once written, unless one before them was abandoned
    // (then they end at once, the same shutdown, and go back to the queue unacknowledged).
    for write in writing {
        if abandoned {
            metrics.requeued.inc_by(write.orders_count as u64);
            let _ = write.task.await;
            continue;
        }
        match billing.settle(write).await {
            Ok(Outcome::Billed) => {}
            Ok(Outcome::Abandoned) => abandoned = true,
            Err(e) => {
                log::warn!(
                    "order consumer: cannot acknowledge a batch written on the way out ({}); it comes back and is found already billed",
                    error_chain(&e)
                );
                abandoned = true;
            }
        }
    }
    close(&connection, &channel).await;
    dead_letters.close().await;
    Ok(end)
}

/// While one at a time: how many must still be billed in a row before full pace resumes.
struct Careful<'a> {
    pace: Pace,
    left: usize,
    channel: &'a Channel,
    settings: &'a Settings,
}

impl Careful<'_> {
    /// Counts `delivered` as billed in a row; true once full pace can resume (more were billed
    /// in a row than were in flight when the unparsable delivery struck, or the queue is empty).
    /// Never while draining or at full pace already.
    async fn full_pace_again(
        &mut self,
        delivered: usize,
        draining: bool,
    ) -> Result<bool, amqp::AmqpError> {
        if self.pace == Pace::Full || draining {
            return Ok(false);
        }
        self.left = self.left.saturating_sub(delivered);
        if self.left == 0 {
            return Ok(true);
        }
        let ready = amqp::within(
            self.settings.connect_timeout,
            amqp::ready_messages(self.channel, self.settings.queue.name()),
        )
        .await?;
        Ok(ready == 0)
    }
}

/// Stops the broker sending more deliveries; false if it did not confirm in time.
async fn cancel_consumer(channel: &Channel, tag: &str) -> Result<bool, lapin::Error> {
    let cancel = channel.basic_cancel(tag.into(), BasicCancelOptions::default());
    match tokio::time::timeout(BROKER_GOODBYE_TIMEOUT, cancel).await {
        Ok(cancelled) => cancelled.map(|()| true),
        Err(_) => {
            log::warn!("the broker did not confirm the consumer's cancel; closing");
            Ok(false)
        }
    }
}

/// Connects, declares the topology and starts a consumer.
async fn start_consuming(
    settings: &Settings,
    prefetch: u16,
) -> Result<(Connection, Channel, String, Consumer, BrokerNode), SessionError> {
    let (connection, channel, node) = amqp::open_channel(
        &settings.brokers,
        "billing-app",
        amqp::Topology::Orders(&settings.queue),
        settings.connect_timeout,
    )
    .await?;
    let tag = amqp::consumer_tag("billing");
    let consume = async {
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        channel
            .basic_consume(
                settings.queue.name().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
    };
    let consumer = amqp::within(settings.connect_timeout, consume).await?;
    Ok((connection, channel, tag, consumer, node))
}

async fn close(connection: &Connection, channel: &Channel) {
    // Unacknowledged deliveries (if any) go back to the queue when the channel closes, or when
    // the connection is dropped if the broker does not answer the close.
    let goodbye = async {
        let _ = channel.close(200, "shutting down".into()).await;
        let _ = connection.close(200, "shutting down".into()).await;
    };
    if tokio::time::timeout(BROKER_GOODBYE_TIMEOUT, goodbye)
        .await
        .is_err()
    {
        log::warn!("the broker did not answer the close; dropping the connection");
    }
}

/// The first delivery plus whatever else arrives within the linger time, up to `size`.
async fn fill_batch(
    first: Delivery,
    consumer: &mut Consumer,
    size: usize,
    linger: Duration,
) -> Result<Vec<Delivery>, lapin::Error> {
    let mut batch = Vec::with_capacity(size);
    batch.push(first);
    let deadline = tokio::time::Instant::now() + linger;
    while batch.len() < size {
        match tokio::time::timeout_at(deadline, consumer.next()).await {
            Ok(Some(delivery)) => batch.push(delivery?),
            // Linger over, or the consumer ended: bill what we have.
            Ok(None) | Err(_) => break,
        }
    }
    Ok(batch)
}

enum Outcome {
    Billed,
    /// Shutdown came while the database was unavailable: the batch stays unacknowledged.
    Abandoned,
}

/// What storing orders came to.
enum Attempt {
    Stored(store::Stored),
    /// The database refuses the data itself; retrying cannot help.
    Refused(StoreError),
    /// Shutdown came while the database was unavailable.
    Abandoned,
}

/// What billing a batch needs: the channel its deliveries came on, where poison goes, the
/// database, the counters, and the stop signal that ends any wait for the database.
struct Billing<'a> {
    channel: &'a Channel,
    dead_letters: &'a DeadLetterOutlet,
    pool: &'a Pool,
    metrics: &'a ConsumerMetrics,
    shutdown: &'a CancellationToken,
}

/// A decoded batch on its way to the database: written by a task of its own, so that the
/// database works on it while the session reads and decodes the next one.
struct Write {
    /// The valid orders' deliveries, in delivery order.
    deliveries: Vec<Delivery>,
    /// Every delivery of the batch, dead-lettered ones included.
    delivered: usize,
    orders_count: usize,
    started: std::time::Instant,
    task: tokio::task::JoinHandle<(Vec<OrderEnvelope>, Attempt)>,
}

impl Billing<'_> {
    /// Dead-letters what is not a valid order and starts writing the rest; `None` if nothing
    /// was left to write.
    async fn decode(&self, batch: Vec<Delivery>) -> Result<Option<Write>, lapin::Error> {
        let started = std::time::Instant::now();
        let delivered = batch.len();
        let mut orders = Vec::with_capacity(batch.len());
        let mut deliveries = Vec::with_capacity(batch.len());
        for delivery in batch {
            match OrderEnvelope::from_amqp(&delivery.properties, &delivery.data) {
                Ok(order) => {
                    deliveries.push(delivery);
                    orders.push(order);
                }
                Err(reason) => {
                    let request_id = OrderEnvelope::request_id_of(&delivery.properties);
                    self.dead_letter(&delivery, request_id.as_ref(), &reason)
                        .await?
                }
            }
        }
        if orders.is_empty() {
            return Ok(None);
        }
        let (pool, shutdown) = (self.pool.clone(), self.shutdown.clone());
        let orders_count = orders.len();
        let task = tokio::spawn(async move {
            let attempt = store(&pool, &orders, &shutdown).await;
            (orders, attempt)
        });
        Ok(Some(Write {
            deliveries,
            delivered,
            orders_count,
            started,
            task,
        }))
    }

    /// Waits for `write` and acknowledges its deliveries. Called in the order the writes were
    /// started: the acknowledgement covers every earlier delivery on the channel.
    async fn settle(&self, write: Write) -> Result<Outcome, lapin::Error> {
        let (orders, attempt) = match write.task.await {
            Ok(written) => written,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        let deliveries = write.deliveries;
        match attempt {
            Attempt::Stored(stored) => {
                // Acknowledge everything up to the last tag: every earlier delivery on this
                // channel is either in this batch or was settled before it.
                let last_tag = deliveries.last().expect("a write has orders").delivery_tag;
                self.channel
                    .basic_ack(last_tag, BasicAckOptions { multiple: true })
                    .await?;
                record_billed(&orders, stored, self.metrics);
                self.metrics
                    .batch_duration
                    .observe(write.started.elapsed().as_secs_f64());
                Ok(Outcome::Billed)
            }
            Attempt::Abandoned => {
                self.metrics.requeued.inc_by(orders.len() as u64);
                Ok(Outcome::Abandoned)
            }
            Attempt::Refused(e) => {
                log::error!(
                    "batch of {} orders refused ({}); storing it in halves to find the culprits",
                    orders.len(),
                    error_chain(&e)
                );
                self.bill_in_halves(orders, deliveries).await
            }
        }
    }

    /// Fallback for a batch the database refused: its halves are stored in turn, a refused
    /// half split again, and an order refused alone dead-lettered. One culprit among n orders
    /// costs about 2·log2(n) writes, not n, so the good orders beside it keep their pace.
    async fn bill_in_halves(
        &self,
        orders: Vec<OrderEnvelope>,
        deliveries: Vec<Delivery>,
    ) -> Result<Outcome, lapin::Error> {
        // Parts still to store, the next one last: always the earliest unsettled deliveries,
        // so a multiple acknowledgement of a stored part covers only settled ones.
        let mut parts = halves(0..orders.len());
        while let Some(part) = parts.pop() {
            let (start, end) = (part.start, part.end);
            match store(self.pool, &orders[part], self.shutdown).await {
                Attempt::Stored(stored) => {
                    self.channel
                        .basic_ack(
                            deliveries[end - 1].delivery_tag,
                            BasicAckOptions { multiple: true },
                        )
                        .await?;
                    record_billed(&orders[start..end], stored, self.metrics);
                }
                // This part and the rest of the batch stay unacknowledged.
                Attempt::Abandoned => {
                    self.metrics.requeued.inc_by((orders.len() - start) as u64);
                    return Ok(Outcome::Abandoned);
                }
                Attempt::Refused(e) if end - start == 1 => {
                    let reason = format!("refused by the database: {}", error_chain(&e));
                    self.dead_letter(
                        &deliveries[start],
                        orders[start].request_id.as_ref(),
                        &reason,
                    )
                    .await?;
                }
                Attempt::Refused(_) => parts.extend(halves(start..end)),
            }
        }
        Ok(Outcome::Billed)
    }

    /// Sends `delivery` to the dead-letter queue with a note of why, then acknowledges it. If
    /// the copy is not confirmed, the delivery is rejected instead and the broker dead-letters it
    /// (without the note): never lost, at worst there twice.
    async fn dead_letter(
        &self,
        delivery: &Delivery,
        request_id: Option<&RequestId>,
        reason: &str,
    ) -> Result<(), lapin::Error> {
        let tag = delivery.delivery_tag;
        let note = DeadLetterNote::new(delivery, reason);
        log::warn!(
            "request_id={} dead-lettering delivery {tag}: {}",
            logged(request_id),
            note.reason
        );
        match self.dead_letters.copy(delivery, &note).await {
            Ok(()) => {
                self.channel
                    .basic_ack(tag, BasicAckOptions::default())
                    .await?;
            }
            Err(why) => {
                log::warn!(
                    "request_id={} the copy for the dead-letter queue failed ({why}); rejecting the delivery so the broker moves it there",
                    logged(request_id)
                );
                self.channel
                    .basic_nack(
                        tag,
                        BasicNackOptions {
                            multiple: false,
                            requeue: false,
                        },
                    )
                    .await?;
            }
        }
        self.metrics.dead_lettered.inc();
        Ok(())
    }
}

/// Stores `orders` in one transaction, holding them unacknowledged and retrying with
/// backoff while the database cannot take them, until shutdown.
async fn store(pool: &Pool, orders: &[OrderEnvelope], shutdown: &CancellationToken) -> Attempt {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let attempt = async {
            let client = pool.get().await?;
            Ok::<_, StoreError>(store::insert_orders(&**client, orders).await?)
        };
        let error = match attempt.await {
            Ok(stored) => return Attempt::Stored(stored),
            // The values themselves: no retry can help; the culprit is found and dead-lettered.
            Err(e) if matches!(e.failure(), Failure::Constraint | Failure::InvalidData) => {
                return Attempt::Refused(e)
            }
            // The database's own trouble (unreachable, read-only, a grant missing, ...): the
            // orders are not at fault, so they are held and retried, never dead-lettered.
            Err(e) => e,
        };
        let delay = backoff.next_delay();
        log::warn!(
            "cannot store {} orders ({}); holding them unacknowledged, retrying in {delay:?}",
            orders.len(),
            error_chain(&error)
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => return Attempt::Abandoned,
        }
    }
}

/// Where the consumer sends the copies of what it dead-letters: a connection of its own, opened
/// at the first copy of a session. Not the consuming connection: RabbitMQ stops reading from a
/// connection that publishes during a memory or disk alarm, and that would stop the consumer's
/// acknowledgements too (billing would hold its deliveries until the alarm ended, while
/// draining the queue is what frees the broker). A copy that is not confirmed in time closes the
/// outlet for [`OUTLET_RETRY`]: meanwhile the rest are rejected, which the broker dead-letters
/// itself (without the note).
pub(crate) struct DeadLetterOutlet {
    settings: Settings,
    state: tokio::sync::Mutex<OutletState>,
}

// One per session: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum OutletState {
    Unopened,
    Open(Connection, Channel),
    /// It failed at this instant: copies are refused at once until [`OUTLET_RETRY`] later.
    Broken(tokio::time::Instant),
}

/// How long after a failed copy the outlet is tried again.
const OUTLET_RETRY: Duration = Duration::from_secs(60);

impl DeadLetterOutlet {
    fn new(settings: &Settings) -> Self {
        Self {
            settings: settings.clone(),
            state: tokio::sync::Mutex::new(OutletState::Unopened),
        }
    }

    /// Publishes the copy with `note` and waits for the broker's confirm.
    async fn copy(&self, delivery: &Delivery, note: &DeadLetterNote) -> Result<(), String> {
        let mut state = self.state.lock().await;
        if let OutletState::Broken(since) = *state {
            if since.elapsed() >= OUTLET_RETRY {
                *state = OutletState::Unopened;
            }
        }
        if let OutletState::Unopened = *state {
            *state = match self.open().await {
                Ok((connection, channel)) => OutletState::Open(connection, channel),
                Err(e) => {
                    *state = OutletState::Broken(tokio::time::Instant::now());
                    return Err(format!("no connection for it: {}", error_chain(&e)));
                }
            };
        }
        let OutletState::Open(_, channel) = &*state else {
            return Err("a copy failed less than a minute ago".to_owned());
        };
        let mut outcome = self.publish(channel, delivery, note).await;
        if let Err(CopyFailure::Returned) = outcome {
            // No dead-letter queue bound (deleted meanwhile): declared again, then once more.
            let declare = self.settings.queue.declare(channel);
            if amqp::within(DEAD_LETTER_CONFIRM_TIMEOUT, declare)
                .await
                .is_ok()
            {
                outcome = self.publish(channel, delivery, note).await;
            }
        }
        match outcome {
            Ok(()) => Ok(()),
            Err(failure) => {
                if !matches!(failure, CopyFailure::Returned) {
                    if let OutletState::Open(connection, _) = std::mem::replace(
                        &mut *state,
                        OutletState::Broken(tokio::time::Instant::now()),
                    ) {
                        drop_connection(connection);
                    }
                }
                Err(failure.to_string())
            }
        }
    }

    async fn open(&self) -> Result<(Connection, Channel), amqp::AmqpError> {
        let settings = &self.settings;
        let (connection, channel, _) = amqp::open_confirming_channel(
            &settings.brokers,
            "billing-app dead letters",
            amqp::Topology::Orders(&settings.queue),
            settings.connect_timeout,
        )
        .await?;
        Ok((connection, channel))
    }

    async fn publish(
        &self,
        channel: &Channel,
        delivery: &Delivery,
        note: &DeadLetterNote,
    ) -> Result<(), CopyFailure> {
        let exchange = self.settings.queue.dead_letter_exchange();
        let confirmed = amqp::within(DEAD_LETTER_CONFIRM_TIMEOUT, async {
            channel
                .basic_publish(
                    exchange.as_str().into(),
                    "".into(),
                    // Returned (and so not stored) if no dead-letter queue is bound.
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &delivery.data,
                    note.attach(&delivery.properties),
                )
                .await?
                .await
        })
        .await;
        match confirmed {
            Ok(Confirmation::Ack(None)) => Ok(()),
            Ok(Confirmation::Ack(Some(_))) => Err(CopyFailure::Returned),
            Ok(_) => Err(CopyFailure::Refused),
            Err(e) => Err(CopyFailure::Broker(error_chain(&e))),
        }
    }

    async fn close(&self) {
        if let OutletState::Open(connection, _) =
            std::mem::replace(&mut *self.state.lock().await, OutletState::Unopened)
        {
            let _ = tokio::time::timeout(
                BROKER_GOODBYE_TIMEOUT,
                connection.close(200, "shutting down".into()),
            )
            .await;
        }
    }
}

/// Closed in the background: a blocked broker may never answer the close.
fn drop_connection(connection: Connection) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(
            BROKER_GOODBYE_TIMEOUT,
            connection.close(200, "dead-letter copy failed".into()),
        )
        .await;
    });
}

#[derive(Debug, thiserror::Error)]
enum CopyFailure {
    #[error("returned: no dead-letter queue is bound")]
    Returned,
    #[error("not confirmed by the broker")]
    Refused,
    #[error("{0}")]
    Broker(String),
}

/// A request id for a log line, `-` without one.
fn logged(request_id: Option<&RequestId>) -> &str {
    request_id.map_or("-", RequestId::as_str)
}

/// A refused range in the order [`Billing::bill_in_halves`] pops them: the later half first,
/// then the earlier; a single order stays whole.
fn halves(range: std::ops::Range<usize>) -> Vec<std::ops::Range<usize>> {
    if range.len() <= 1 {
        return vec![range];
    }
    let middle = range.start + range.len() / 2;
    vec![middle..range.end, range.start..middle]
}

/// Counts and logs orders just stored (in one write) and acknowledged; one line per order,
/// carrying the request id, so one grep follows an order from the gateway to here.
fn record_billed(orders: &[OrderEnvelope], stored: store::Stored, metrics: &ConsumerMetrics) {
    metrics.writes.inc();
    let duplicates = orders.len() as u64 - stored.inserted - stored.conflicts;
    metrics.acked.inc_by(orders.len() as u64);
    metrics.billed.inc_by(stored.inserted);
    metrics.duplicates.inc_by(duplicates);
    metrics.conflicts.inc_by(stored.conflicts);
    if stored.conflicts > 0 {
        log::warn!(
            "{} orders reused an Idempotency-Key already billed with another payload: recorded \
             as conflicts on their order, not billed",
            stored.conflicts
        );
    }
    for order in orders {
        let trace = order.traceparent.as_ref().map_or(String::new(), |context| {
            format!(" traceparent={}", context.as_str())
        });
        log::info!(
            "request_id={} order_id={} billed{trace}",
            logged(order.request_id.as_ref()),
            order.message.order_id
        );
    }
    if duplicates > 0 {
        log::info!(
            "{duplicates} of {} orders were already billed (redelivered) and were skipped",
            orders.len()
        );
    }
}

/// Samples the queue's backlog into a gauge every few seconds while a session lasts.
struct BacklogSampler(tokio::task::JoinHandle<()>);

impl BacklogSampler {
    fn start(channel: &Channel, queue: &str, metrics: &ConsumerMetrics) -> Self {
        let (channel, queue, backlog) =
            (channel.clone(), queue.to_owned(), metrics.backlog.clone());
        Self(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                match amqp::ready_messages(&channel, &queue).await {
                    Ok(ready) => backlog.set(i64::from(ready)),
                    Err(_) => return,
                }
            }
        }))
    }
}

impl Drop for BacklogSampler {
    fn drop(&mut self) {
        self.0.abort();
    }
}
