//! The gateway's own metrics (beside the HTTP ones every service has).

use common::{
    amqp::{BrokerNodes, NodeGauge},
    metrics::Metrics,
};
use prometheus::{Histogram, IntCounterVec, IntGauge};

/// Order publishing: attempts by outcome, time to the broker's confirm, connection state.
#[derive(Clone)]
pub(crate) struct PublishMetrics {
    /// `outcome`: confirmed, nacked, unroutable, timeout, not_connected, error.
    pub(crate) orders: IntCounterVec,
    pub(crate) confirm_duration: Histogram,
    pub(crate) broker_connected: IntGauge,
    pub(crate) broker_node: NodeGauge,
}

impl PublishMetrics {
    pub(crate) fn new(metrics: &Metrics, brokers: &BrokerNodes) -> Self {
        Self {
            orders: metrics.counter_vec(
                "orders_published_total",
                "Orders the gateway tried to publish, by outcome (only `confirmed` ones were answered 202).",
                &["outcome"],
            ),
            confirm_duration: metrics.histogram(
                "order_publish_duration_seconds",
                "Time from publishing an order to the broker's confirmation.",
            ),
            broker_connected: metrics.gauge("broker_connected", "1 while the gateway holds a broker connection."),
            broker_node: NodeGauge::new(metrics, brokers),
        }
    }
}
