use std::{net::SocketAddr, time::Duration};

use common::{
    amqp::{BrokerNodes, OrderQueue},
    config::{ConfigError, Env, FromEnv},
};
use database::DatabaseSettings;

#[derive(Debug, Clone)]
pub struct Settings {
    /// `BILLING_HTTP_ADDR`: health, readiness, metrics and order status (a private address).
    pub http_bind_addr: SocketAddr,
    pub database: DatabaseSettings,
    /// `AMQP_URL`: the broker nodes, comma-separated, the local one first (with credentials:
    /// never logged).
    pub brokers: BrokerNodes,
    /// `BILLING_QUEUE` (default `billing_queue`).
    pub queue: OrderQueue,
    /// `BILLING_PREFETCH`: unacknowledged deliveries the broker may send ahead.
    pub prefetch: u16,
    /// `BILLING_BATCH_SIZE`: orders written (and acknowledged) together.
    pub batch_size: usize,
    /// `BILLING_BATCH_LINGER_MS`: how long a batch waits to fill once its first order is in.
    pub batch_linger: Duration,
    /// `AMQP_CONNECT_TIMEOUT_MS`.
    pub connect_timeout: Duration,
    /// `SHUTDOWN_TIMEOUT_MS`: the longest a stop may take, whatever state the consumer is in;
    /// orders not acknowledged by then go back to the queue.
    pub shutdown_timeout: Duration,
}

impl FromEnv for Settings {
    /// Every setting, checked; `env` is the process environment in production.
    fn read(env: &Env) -> Result<Self, ConfigError> {
        let queue: String = env.or_default("BILLING_QUEUE", OrderQueue::DEFAULT_NAME.to_owned())?;
        // Chosen by measurement (BENCHMARKS.md): a 100,000-order backlog drains at ~47,000/s
        // with 500 / 200, ~64,000-77,000/s with 2,000 / 500 and ~77,000-80,000/s with these,
        // one write at a time. With two writes at once these give 92,000-105,000/s (64,000-70,000
        // serial earlier the same day); 4,000 / 2,000 and 6,000 / 1,500 were within the noise.
        let batch_size = env.count_or_default("BILLING_BATCH_SIZE", 1_000, 1..=5_000)?;
        let prefetch = env.count_or_default("BILLING_PREFETCH", 4_000, 1..=65_535)?;
        if prefetch < batch_size {
            return Err(ConfigError::invalid(
                "BILLING_PREFETCH",
                "must be at least BILLING_BATCH_SIZE, or batches can never fill",
            ));
        }
        Ok(Self {
            http_bind_addr: env.or_default(
                "BILLING_HTTP_ADDR",
                SocketAddr::from(([127, 0, 0, 1], 8082)),
            )?,
            database: DatabaseSettings::read(env)?,
            brokers: env.required("AMQP_URL")?,
            queue: OrderQueue::new(&queue).map_err(|e| ConfigError::invalid("BILLING_QUEUE", e))?,
            prefetch: prefetch as u16,
            batch_size,
            batch_linger: env.millis_or_default("BILLING_BATCH_LINGER_MS", 5)?,
            connect_timeout: env.millis_or_default("AMQP_CONNECT_TIMEOUT_MS", 5_000)?,
            shutdown_timeout: env.millis_or_default("SHUTDOWN_TIMEOUT_MS", 10_000)?,
        })
    }
}
