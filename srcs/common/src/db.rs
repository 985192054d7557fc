//! PostgreSQL connection pools with explicit timeouts: deadpool's defaults wait forever, which
//! turns a database outage into hung requests instead of quick 503s.

use std::time::Duration;

use deadpool_postgres::{
    Connect, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts,
};
use futures_util::future::BoxFuture;
use tokio_postgres::NoTls;

use crate::config::{self, ConfigError};

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
    pub fn from_env() -> Result<Self, ConfigError> {
        let url: String = config::required("DATABASE_URL")?;
        let migration_url: String = config::or_default("DATABASE_MIGRATION_URL", String::new())?;
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
            max_connections: config::count_or_default("DATABASE_MAX_CONNECTIONS", 16, 1..=1000)?,
            pool_timeout: config::millis_or_default("DATABASE_POOL_TIMEOUT_MS", 2_000)?,
            statement_timeout: config::millis_or_default("DATABASE_STATEMENT_TIMEOUT_MS", 5_000)?,
        })
    }

    pub fn with_url(url: &str) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            connection: url.parse()?,
            migration_connection: None,
            max_connections: 16,
            pool_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(5),
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
            let client = client_rx
                .await
                .expect("the connecting task answers unless the runtime is shutting down")?;
            Ok((client, task))
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

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("database unreachable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Database(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Refinery(#[from] refinery::Error),
}

/// Identifies a schema: changes whenever a migration is added or edited (tests key their
/// template database on it).
pub fn schema_fingerprint(runner: &refinery::Runner) -> String {
    let hash = runner
        .get_migrations()
        .iter()
        .fold(0u64, |acc, m| acc.rotate_left(5) ^ m.checksum());
    format!("{hash:016x}")
}

/// Applies the migrations that have not run yet, one service instance at a time (an advisory
/// lock keyed on `lock_id`).
pub async fn migrate(
    pool: &Pool,
    runner: refinery::Runner,
    lock_id: i64,
) -> Result<(), MigrationError> {
    let mut client = pool
        .get()
        .await
        .map_err(|e| MigrationError::Unavailable(e.to_string()))?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&lock_id])
        .await?;
    let report = runner.run_async(&mut **client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&lock_id])
        .await?;
    for migration in report?.applied_migrations() {
        log::info!("applied migration {migration}");
    }
    Ok(())
}

/// [`migrate`] as the schema owner (`DATABASE_MIGRATION_URL`, else the service's own
/// connection), waiting with backoff while the database is unreachable (a service may start
/// before its database); any other failure is returned.
pub async fn migrate_when_reachable(
    settings: &DatabaseSettings,
    pool: &Pool,
    runner: impl Fn() -> refinery::Runner,
    lock_id: i64,
) -> Result<(), MigrationError> {
    let owner_pool = settings.migration_connection.as_ref().map(|owner| {
        let owner_settings = DatabaseSettings {
            connection: owner.clone(),
            migration_connection: None,
            max_connections: 1,
            ..settings.clone()
        };
        build_pool(&owner_settings, "migrations")
    });
    let migrating = owner_pool.as_ref().unwrap_or(pool);
    let mut backoff =
        crate::backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let result = loop {
        match migrate(migrating, runner(), lock_id).await {
            Err(MigrationError::Unavailable(reason)) => {
                let delay = backoff.next_delay();
                log::warn!("database not reachable yet ({reason}); retrying in {delay:?}");
                tokio::time::sleep(delay).await;
            }
            other => break other,
        }
    };
    if let Some(owner_pool) = owner_pool {
        owner_pool.close();
    }
    result
}

/// The answer to a failed database call: 503 when the database is unreachable or refusing work
/// (the caller may retry), 409 for an integrity constraint, 500 otherwise. `what` names the
/// database for the client ("catalogue", "billing").
pub fn failure_problem(err: Option<&tokio_postgres::Error>, what: &str) -> crate::problem::Problem {
    use crate::problem::Problem;
    use actix_web::http::StatusCode;
    match err {
        // No connection could be had in time (a pool error).
        None => unavailable_problem(what),
        Some(e) if is_transient(e) => unavailable_problem(what),
        Some(e) if e.code().is_some_and(|c| c.code().starts_with("23")) => {
            Problem::new(StatusCode::CONFLICT)
                .with_detail("The change conflicts with the stored data.")
        }
        Some(_) => Problem::new(StatusCode::INTERNAL_SERVER_ERROR)
            .with_detail("An unexpected error occurred; it has been logged."),
    }
}

fn unavailable_problem(what: &str) -> crate::problem::Problem {
    crate::problem::Problem::new(actix_web::http::StatusCode::SERVICE_UNAVAILABLE)
        .with_detail(format!(
            "The {what} database is unavailable; try again shortly."
        ))
        .with_retry_after(2)
}

/// Logs a failed request in full (the client got a generic problem): errors at 500, warnings at
/// 409/503.
pub fn log_failure(status: u16, err: &(dyn std::error::Error + 'static)) {
    let id = crate::request_id::current().unwrap_or_default();
    let chain = crate::telemetry::error_chain(err);
    match status {
        500.. if status != 503 => log::error!("request_id={id} internal error: {chain}"),
        409 | 503 => log::warn!("request_id={id} {chain}"),
        _ => {}
    }
}

/// The schema functions of a service whose migrations live in its crate's `migrations/` folder:
/// `schema_fingerprint()`, `migrate(pool)` and `migrate_when_reachable(settings, pool)`.
/// `lock_id` keys the advisory lock that serialises migrations between instances.
/// (A macro, because `refinery::embed_migrations!` must expand in the service's own crate.)
#[macro_export]
macro_rules! embedded_schema {
    ($lock_id:expr) => {
        mod embedded {
            refinery::embed_migrations!("migrations");
        }

        /// Identifies this service's schema (tests key their template database on it).
        pub fn schema_fingerprint() -> String {
            $crate::db::schema_fingerprint(&embedded::migrations::runner())
        }

        /// Applies the migrations that have not run yet.
        pub async fn migrate(
            pool: &deadpool_postgres::Pool,
        ) -> Result<(), $crate::db::MigrationError> {
            $crate::db::migrate(pool, embedded::migrations::runner(), $lock_id).await
        }

        /// [`migrate`] as the schema owner, waiting while the database is unreachable.
        pub async fn migrate_when_reachable(
            settings: &$crate::db::DatabaseSettings,
            pool: &deadpool_postgres::Pool,
        ) -> Result<(), $crate::db::MigrationError> {
            $crate::db::migrate_when_reachable(
                settings,
                pool,
                embedded::migrations::runner,
                $lock_id,
            )
            .await
        }
    };
}
