use common::metrics::Metrics;
use prometheus::{Histogram, IntCounter, IntGauge};

/// What the consumer counts.
#[derive(Clone)]
pub(crate) struct ConsumerMetrics {
    pub(crate) received: IntCounter,
    pub(crate) acked: IntCounter,
    pub(crate) requeued: IntCounter,
    pub(crate) dead_lettered: IntCounter,
    pub(crate) billed: IntCounter,
    pub(crate) duplicates: IntCounter,
    pub(crate) conflicts: IntCounter,
    pub(crate) batch_duration: Histogram,
    pub(crate) writes: IntCounter,
    pub(crate) backlog: IntGauge,
}

impl ConsumerMetrics {
    pub(crate) fn new(metrics: &Metrics) -> Self {
        Self {
            received: metrics.counter("messages_received_total", "Order messages delivered to billing."),
            acked: metrics.counter("messages_acked_total", "Order messages acknowledged after their order was stored."),
            requeued: metrics.counter(
                "messages_requeued_total",
                "Order messages given back to the queue unprocessed (shutdown during a database outage).",
            ),
            dead_lettered: metrics.counter("messages_dead_lettered_total", "Messages rejected to the dead-letter queue."),
            billed: metrics.counter("orders_billed_total", "Orders stored (new rows)."),
            duplicates: metrics.counter(
                "orders_duplicate_total",
                "Redelivered or duplicated orders skipped because they were already stored.",
            ),
            conflicts: metrics.counter(
                "orders_idempotency_conflicts_total",
                "Orders refused because their Idempotency-Key was already billed with another payload.",
            ),
            batch_duration: metrics.histogram(
                "batch_processing_duration_seconds",
                "Time to store and acknowledge one batch of orders.",
            ),
            writes: metrics.counter(
                "database_writes_total",
                "Transactions that stored orders: one per batch, and the smaller ones that find the order a refused batch stumbled on.",
            ),
            backlog: metrics.gauge("queue_backlog_messages", "Messages ready in the order queue (sampled)."),
        }
    }
}
