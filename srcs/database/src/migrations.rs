//! Schema migrations: embedded per service (`embedded_schema!`), applied at start by one
//! instance at a time.

use std::time::Duration;

use deadpool_postgres::Pool;

use super::{build_pool, DatabaseSettings};

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
        common::backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
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
            $crate::schema_fingerprint(&embedded::migrations::runner())
        }

        /// Applies the migrations that have not run yet.
        pub async fn migrate(pool: &deadpool_postgres::Pool) -> Result<(), $crate::MigrationError> {
            $crate::migrate(pool, embedded::migrations::runner(), $lock_id).await
        }

        /// [`migrate`] as the schema owner, waiting while the database is unreachable.
        pub async fn migrate_when_reachable(
            settings: &$crate::DatabaseSettings,
            pool: &deadpool_postgres::Pool,
        ) -> Result<(), $crate::MigrationError> {
            $crate::migrate_when_reachable(settings, pool, embedded::migrations::runner, $lock_id)
                .await
        }
    };
}

impl From<MigrationError> for common::lifecycle::StartupError {
    fn from(e: MigrationError) -> Self {
        Self::Migration(Box::new(e))
    }
}
