use std::{net::SocketAddr, time::Duration};

use common::{
    amqp::BrokerNodes,
    auth::AdminToken,
    catalogue_event,
    config::{ConfigError, Env, FromEnv},
};
use database::DatabaseSettings;

#[derive(Debug, Clone)]
pub struct Settings {
    /// `INVENTORY_BIND_ADDR`: a private address; only the gateway should reach it.
    pub bind_addr: SocketAddr,
    pub database: DatabaseSettings,
    /// `SHUTDOWN_TIMEOUT_MS`: how long in-flight requests may take to finish after SIGTERM.
    pub shutdown_timeout: Duration,
    /// `ADMIN_TOKEN`: the gateway's, required on writes (the gateway passes the client's on).
    pub admin_token: AdminToken,
    /// Where the catalogue's change events go (see `relay`).
    pub events: EventSettings,
}

/// The change events' relay to the broker.
#[derive(Debug, Clone)]
pub struct EventSettings {
    /// `AMQP_URL`: the broker nodes, comma-separated, the local one first (with credentials:
    /// never logged).
    pub brokers: BrokerNodes,
    /// `CATALOGUE_EXCHANGE` (default `catalogue.events`): the topic exchange.
    pub exchange: String,
    /// `AMQP_CONNECT_TIMEOUT_MS`.
    pub connect_timeout: Duration,
    /// `PUBLISH_TIMEOUT_MS`: waiting for the broker to confirm a batch of events.
    pub publish_timeout: Duration,
}

impl FromEnv for Settings {
    /// Every setting, checked; `env` is the process environment in production.
    fn read(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            bind_addr: env.or_default(
                "INVENTORY_BIND_ADDR",
                SocketAddr::from(([127, 0, 0, 1], 8081)),
            )?,
            database: DatabaseSettings::read(env)?,
            shutdown_timeout: env.millis_or_default("SHUTDOWN_TIMEOUT_MS", 10_000)?,
            admin_token: env.required("ADMIN_TOKEN")?,
            events: EventSettings {
                brokers: env.required("AMQP_URL")?,
                exchange: env
                    .or_default(
                        "CATALOGUE_EXCHANGE",
                        catalogue_event::DEFAULT_EXCHANGE.to_owned(),
                    )
                    .and_then(|name: String| {
                        common::amqp::check_name(&name)
                            .map_err(|e| ConfigError::invalid("CATALOGUE_EXCHANGE", e))?;
                        Ok(name)
                    })?,
                connect_timeout: env.millis_or_default("AMQP_CONNECT_TIMEOUT_MS", 5_000)?,
                publish_timeout: env.millis_or_default("PUBLISH_TIMEOUT_MS", 5_000)?,
            },
        })
    }
}
