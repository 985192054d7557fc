//! Helpers for the integration and end-to-end tests. They use the real PostgreSQL and RabbitMQ
//! that `scripts/test.sh` starts; when those are missing, tests fail loudly, they never skip.
//!
//! - `settings`: each service's test configuration, derived from its real one with a few
//!   overrides, as environment variables (for binaries) or parsed settings (in process).
//! - `apps`: a service running in the test's process ([`RunningApp`]), and each service's
//!   database cloned from a migrated template ([`inventory_database`], [`billing_database`]).
//! - `database`, `amqp`, `proxy`: per-test databases and queues, a cuttable TCP proxy.
//! - `http`: what every HTTP test checks the same way ([`assert_problem`]).
//! - [`order_message`]: the order the queue tests and the benchmark send.

mod amqp;
mod apps;
#[cfg(feature = "messages")]
pub mod asyncapi;
mod database;
mod http;
mod proxy;
pub mod raw_amqp;
mod settings;

#[cfg(feature = "messages")]
pub use amqp::EventTap;
pub use amqp::{
    amqp_channel, broker_through_proxy, order_message, queue_depth, test_amqp_url,
    test_catalogue_exchange, test_cluster_url, unique_exchange, unique_queue,
};
pub use apps::{billing_database, inventory_database, RunningApp};
pub use database::{test_database_url, TestDatabase};
pub use http::{assert_problem, get_json, get_text};
pub use proxy::TcpProxy;
pub use settings::{billing_settings, gateway_settings, inventory_settings, ServiceEnv};

use std::time::Duration;

/// The admin token of every service a test starts (`ADMIN_TOKEN`).
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

/// Polls `condition` every 50 ms until it holds, panicking with `what` after `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of one series in a Prometheus scrape (`name{labels} value`); 0 when absent, as
/// Prometheus reads a counter that has not moved yet.
pub fn metric(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Logs of the services a test runs in its process, shown for failing tests.
fn init_logging() {
    common::telemetry::init_logging();
}

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests need the real PostgreSQL and RabbitMQ that \
             scripts/test.sh installs, starts and describes. Run the tests with scripts/test.sh."
        )
    })
}
