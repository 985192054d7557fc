use std::{net::SocketAddr, time::Duration};

use common::{
    auth::AdminToken,
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
        })
    }
}
