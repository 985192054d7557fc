//! Each service's configuration under test: the variables its real configuration requires,
//! pointed at the test's own database, queue and ports. A new setting is added here once, and
//! reaches in-process tests and the binaries the end-to-end tests start alike.

use common::{
    amqp::OrderQueue,
    config::{Env, FromEnv},
};

use crate::{test_amqp_url, test_catalogue_exchange, ADMIN_TOKEN};

/// The environment of one service under test.
#[derive(Debug, Clone)]
pub struct ServiceEnv(Vec<(&'static str, String)>);

impl ServiceEnv {
    /// inventory-app on a free loopback port, against `database_url`.
    pub fn inventory(database_url: &str) -> Self {
        Self(vec![
            ("INVENTORY_BIND_ADDR", "127.0.0.1:0".to_owned()),
            ("DATABASE_URL", database_url.to_owned()),
            ("ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
            ("AMQP_URL", test_amqp_url()),
            ("CATALOGUE_EXCHANGE", test_catalogue_exchange().to_owned()),
        ])
    }

    /// billing-app on a free loopback port, against `database_url`, consuming `queue` on the
    /// test broker.
    pub fn billing(database_url: &str, queue: &OrderQueue) -> Self {
        Self(vec![
            ("BILLING_HTTP_ADDR", "127.0.0.1:0".to_owned()),
            ("DATABASE_URL", database_url.to_owned()),
            ("AMQP_URL", test_amqp_url()),
            ("BILLING_QUEUE", queue.name().to_owned()),
        ])
    }

    /// api-gateway on a free loopback port in front of `inventory_url` and `billing_url`,
    /// publishing to `queue` on the test broker; no rate limit (tests send bursts from one
    /// address; the limit has tests of its own).
    pub fn gateway(inventory_url: &str, billing_url: &str, queue: &OrderQueue) -> Self {
        Self(vec![
            ("GATEWAY_BIND_ADDR", "127.0.0.1:0".to_owned()),
            ("INVENTORY_URL", inventory_url.to_owned()),
            ("BILLING_URL", billing_url.to_owned()),
            ("AMQP_URL", test_amqp_url()),
            ("BILLING_QUEUE", queue.name().to_owned()),
            ("ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
            ("RATE_LIMIT_PER_SECOND", "0".to_owned()),
            ("CATALOGUE_EXCHANGE", test_catalogue_exchange().to_owned()),
        ])
    }

    /// The same environment with `name` set to `value` (replacing an earlier value).
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.0.retain(|(existing, _)| *existing != name);
        self.0.push((name, value.into()));
        self
    }

    /// The variables, for a binary's environment.
    pub fn vars(&self) -> &[(&'static str, String)] {
        &self.0
    }

    /// The variables as a configuration source, for settings parsed in the test's process.
    pub fn config(&self) -> Env {
        Env::given(self.0.iter().map(|(name, value)| (*name, value.clone())))
    }
}

/// In a test's process, failures should show in well under a second, and a stopped app should
/// not keep the test waiting.
fn in_process(env: ServiceEnv) -> ServiceEnv {
    env.with("DATABASE_POOL_TIMEOUT_MS", "500")
        .with("SHUTDOWN_TIMEOUT_MS", "1000")
}

pub fn inventory_settings(database_url: &str) -> inventory_app::configuration::Settings {
    let env = in_process(ServiceEnv::inventory(database_url))
        .with("AMQP_CONNECT_TIMEOUT_MS", "2000")
        .with("PUBLISH_TIMEOUT_MS", "2000");
    inventory_app::configuration::Settings::read(&env.config()).expect("test settings are valid")
}

pub fn billing_settings(
    database_url: &str,
    queue: &OrderQueue,
) -> billing_app::configuration::Settings {
    let env = in_process(ServiceEnv::billing(database_url, queue))
        .with("BILLING_PREFETCH", "100")
        .with("BILLING_BATCH_SIZE", "50")
        .with("AMQP_CONNECT_TIMEOUT_MS", "2000")
        // Long enough for the stop tests to finish a drain.
        .with("SHUTDOWN_TIMEOUT_MS", "5000");
    billing_app::configuration::Settings::read(&env.config()).expect("test settings are valid")
}

pub fn gateway_settings(
    inventory_url: &str,
    billing_url: &str,
    queue: &OrderQueue,
) -> api_gateway::configuration::Settings {
    let env = in_process(ServiceEnv::gateway(inventory_url, billing_url, queue))
        .with("UPSTREAM_CONNECT_TIMEOUT_MS", "500")
        .with("UPSTREAM_TIMEOUT_MS", "2000")
        .with("AMQP_CONNECT_TIMEOUT_MS", "2000")
        .with("PUBLISH_TIMEOUT_MS", "2000");
    api_gateway::configuration::Settings::read(&env.config()).expect("test settings are valid")
}
