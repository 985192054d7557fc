//! PostgreSQL connection pools with explicit timeouts: deadpool's defaults wait forever, which
//! turns a database outage into hung requests instead of quick 503s.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use tokio_postgres::NoTls;

use crate::config::{self, ConfigError};

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// Parsed from a `postgres://` URL; holds the password, so it is never logged.
    pub connection: tokio_postgres::Config,
    pub max_connections: usize,
    /// How long a caller may wait for a pooled connection, and how long opening or checking
    /// one may take.
    pub pool_timeout: Duration,
    /// Server-side limit for any one statement.
    pub statement_timeout: Duration,
}

impl DatabaseSettings {
    /// Reads `DATABASE_URL`, `DATABASE_MAX_CONNECTIONS`, `DATABASE_POOL_TIMEOUT_MS` and
    /// `DATABASE_STATEMENT_TIMEOUT_MS`.
    pub fn from_env() -> Result<Self, ConfigError> {
        let url: String = config::required("DATABASE_URL")?;
        Ok(Self {
            connection: url
                .parse()
                .map_err(|e| ConfigError::invalid("DATABASE_URL", e))?,
            max_connections: config::count_or_default("DATABASE_MAX_CONNECTIONS", 16, 1..=1000)?,
            pool_timeout: config::millis_or_default("DATABASE_POOL_TIMEOUT_MS", 2_000)?,
            statement_timeout: config::millis_or_default("DATABASE_STATEMENT_TIMEOUT_MS", 5_000)?,
        })
    }

    pub fn with_url(url: &str) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            connection: url.parse()?,
            max_connections: 16,
            pool_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(5),
        })
    }
}

/// Builds a pool; no connection is opened until first use, so a service starts while its
/// database is still down and recovers on its own when it comes up.
pub fn build_pool(settings: &DatabaseSettings, application_name: &str) -> Pool {
    let mut pg = settings.connection.clone();
    pg.application_name(application_name)
        .connect_timeout(settings.pool_timeout)
        .options(format!(
            "-c statement_timeout={} -c idle_in_transaction_session_timeout={}",
            settings.statement_timeout.as_millis(),
            (settings.statement_timeout * 2).as_millis()
        ));
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(settings.max_connections)
        .timeouts(Timeouts {
            wait: Some(settings.pool_timeout),
            create: Some(settings.pool_timeout),
            recycle: Some(settings.pool_timeout),
        })
        .runtime(Runtime::Tokio1)
        .build()
        .expect("a pool with a runtime and timeouts always builds")
}

/// Connection-level failures and the server refusing work, as opposed to errors in a statement.
pub fn is_transient(err: &tokio_postgres::Error) -> bool {
    if err.is_closed() {
        return true;
    }
    match err.code() {
        // No SQLSTATE: the socket failed, connect timed out, or the connection broke.
        None => true,
        Some(code) => {
            let class = &code.code()[..2];
            // 08 connection exception, 53 insufficient resources, 57 operator intervention
            // (shutdown, statement timeout, ...), 40 transaction rollback (serialization, deadlock).
            matches!(class, "08" | "53" | "57" | "40")
        }
    }
}
