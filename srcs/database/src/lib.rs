//! PostgreSQL, for the services that have a database (the gateway has none, and does not even
//! compile this): connection pools with explicit timeouts (deadpool's defaults wait forever, which turns a database outage
//! into hung requests instead of quick 503s), migrations, what a failure means, and the pool's
//! readiness check and gauges.

mod migrations;
mod observe;

pub use migrations::{migrate, migrate_when_reachable, schema_fingerprint, MigrationError};
pub use observe::{is_up, scrape_with_pool, PoolGauges};

use std::time::Duration;

use deadpool_postgres::{
    Connect, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts,
};
use futures_util::future::BoxFuture;
use tokio_postgres::NoTls;

use common::config::{ConfigError, Env};

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// Parsed from a `postgres://` URL; holds the password, so it is never logged.
    pub connection: tokio_postgres::Config,
    /// `DATABASE_MIGRATION_URL`: the schema owner, used only to apply migrations at start, so
    /// the service's own role can be limited to the statements it runs. Unset: `DATABASE_URL`
    /// migrates too.
    pub migration_connection: Option<tokio_postgres::Config>,
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
    pub fn read(env: &Env) -> Result<Self, ConfigError> {
        let url: String = env.required("DATABASE_URL")?;
        let migration_url: String = env.or_default("DATABASE_MIGRATION_URL", String::new())?;
        Ok(Self {
            connection: url
                .parse()
                .map_err(|e| ConfigError::invalid("DATABASE_URL", e))?,
            migration_connection: match migration_url.as_str() {
                "" => None,
                url => Some(
                    url.parse()
                        .map_err(|e| ConfigError::invalid("DATABASE_MIGRATION_URL", e))?,
                ),
            },
            max_connections: env.count_or_default("DATABASE_MAX_CONNECTIONS", 16, 1..=1000)?,
            pool_timeout: env.millis_or_default("DATABASE_POOL_TIMEOUT_MS", 2_000)?,
            statement_timeout: env.millis_or_default("DATABASE_STATEMENT_TIMEOUT_MS", 5_000)?,
        })
    }
}

/// Opens connections on one runtime (the process's main one). actix-web runs each worker on a
/// runtime of its own, and a connection opened from a request would belong to that worker's
/// runtime; at shutdown an idle worker's runtime stops first and takes its connections with it,
/// while other workers still use them from the shared pool ("connection closed" mid-request).
struct ConnectOnRuntime {
    runtime: tokio::runtime::Handle,
}

impl Connect for ConnectOnRuntime {
    fn connect(
        &self,
        pg_config: &tokio_postgres::Config,
    ) -> BoxFuture<
        '_,
        Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>,
    > {
        let pg_config = pg_config.clone();
        let (client_tx, client_rx) = tokio::sync::oneshot::channel();
        // Connecting happens in the task too: a socket belongs to the runtime that opened it.
        let task = self.runtime.spawn(async move {
            match pg_config.connect(NoTls).await {
                Ok((client, connection)) => {
                    // Nobody waiting (the pool's create timeout passed): drop the connection.
                    if client_tx.send(Ok(client)).is_ok() {
                        if let Err(e) = connection.await {
                            log::warn!("database connection: {e}");
                        }
                    }
                }
                Err(e) => {
                    let _ = client_tx.send(Err(e));
                }
            }
        });
        Box::pin(async move {
            match client_rx.await {
                Ok(client) => Ok((client?, task)),
                // The runtime is shutting down and dropped the task unanswered: no panic, the
                // pool's create timeout (always set, below) answers the caller.
                Err(_) => std::future::pending().await,
            }
        })
    }
}

/// Builds a pool; no connection is opened until first use, so a service starts while its
/// database is still down and recovers on its own when it comes up. Must be called from the
/// runtime that should own the connections (the main one).
pub fn build_pool(settings: &DatabaseSettings, application_name: &str) -> Pool {
    let mut pg = settings.connection.clone();
    pg.application_name(application_name)
        .connect_timeout(settings.pool_timeout)
        .options(format!(
            "-c statement_timeout={} -c idle_in_transaction_session_timeout={}",
            settings.statement_timeout.as_millis(),
            (settings.statement_timeout * 2).as_millis()
        ));
    let manager = Manager::from_connect(
        pg,
        ConnectOnRuntime {
            runtime: tokio::runtime::Handle::current(),
        },
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

/// What a failed database call means for the caller; each service's error type turns it into
/// its answer (503, 409, 500) in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Unreachable, or refusing work for now (read-only, out of resources, shutting down):
    /// worth retrying.
    Unavailable,
    /// An integrity constraint (SQLSTATE class 23): the data conflicts with what is stored.
    Constraint,
    /// The values themselves cannot be stored (class 22, data exception: out of range,
    /// malformed; class 54, a limit they exceed, such as an index row too large; class P0, a
    /// trigger's refusal).
    InvalidData,
    /// Anything else: a fault in the statement, the schema or the role's grants.
    Fault,
}

impl Failure {
    /// `None` is a pool error: no connection could be had in time.
    pub fn of(err: Option<&tokio_postgres::Error>) -> Self {
        match err {
            None => Self::Unavailable,
            Some(e) if is_transient(e) => Self::Unavailable,
            Some(e) => match e.code().map(|c| &c.code()[..2]) {
                Some("23") => Self::Constraint,
                Some("22" | "54" | "P0") => Self::InvalidData,
                _ => Self::Fault,
            },
        }
    }
}

/// Connection-level failures and the server refusing work, as opposed to errors in a statement.
pub(crate) fn is_transient(err: &tokio_postgres::Error) -> bool {
    if err.is_closed() {
        return true;
    }
    match err.code() {
        // No SQLSTATE: the socket failed, connect timed out, or the connection broke.
        None => true,
        Some(code) => {
            let class = &code.code()[..2];
            // 08 connection exception, 53 insufficient resources, 57 operator intervention
            // (shutdown, statement timeout, ...), 40 transaction rollback (serialization,
            // deadlock), 58 system error (I/O); 25006 a read-only database (a standby not yet
            // promoted), 55P03 a lock not available in time.
            matches!(class, "08" | "53" | "57" | "40" | "58")
                || matches!(code.code(), "25006" | "55P03")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_connect_cut_short_by_its_runtime_stopping_times_out_without_a_panic() {
        // Takes connections and never answers: a login that waits for ever.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("postgres://nobody@{}/nothing", silent.local_addr().unwrap());
        let env = Env::given([
            ("DATABASE_URL", url.as_str()),
            ("DATABASE_POOL_TIMEOUT_MS", "500"),
        ]);
        let settings = DatabaseSettings::read(&env).unwrap();
        let connecting = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let pool = connecting.block_on(async { build_pool(&settings, "test") });
        // The connecting runtime stops (a service shutting down) while a caller waits.
        let stopping = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            connecting.shutdown_background();
        });
        let caller = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let outcome = caller.block_on(pool.get());
        stopping.join().unwrap();
        assert!(
            matches!(outcome, Err(deadpool_postgres::PoolError::Timeout(_))),
            "{:?}",
            outcome.map(|_| ())
        );
    }
}
