use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use common::metrics::Metrics;
use prometheus::{Histogram, IntCounter, IntGauge};

/// What the consumer counts, and whether it is consuming right now (for readiness).
#[derive(Clone)]
pub struct ConsumerMetrics {
    pub received: IntCounter,
    pub acked: IntCounter,
    pub requeued: IntCounter,
    pub dead_lettered: IntCounter,
    pub billed: IntCounter,
    pub duplicates: IntCounter,
    pub conflicts: IntCounter,
    pub batch_duration: Histogram,
    pub backlog: IntGauge,
    consuming_gauge: IntGauge,
    consuming: Arc<AtomicBool>,
}

impl ConsumerMetrics {
    pub fn new(metrics: &Metrics) -> Self {
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
            backlog: metrics.gauge("queue_backlog_messages", "Messages ready in the order queue (sampled)."),
            consuming_gauge: metrics.gauge("consumer_connected", "1 while consuming from the broker."),
            consuming: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn set_consuming(&self, consuming: bool) {
        self.consuming.store(consuming, Ordering::SeqCst);
        self.consuming_gauge.set(i64::from(consuming));
    }

    pub fn is_consuming(&self) -> bool {
        self.consuming.load(Ordering::SeqCst)
    }
}
