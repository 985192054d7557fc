use std::future::Future;

use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

use crate::{configuration::Settings, consumer, store};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("database migration failed: {0}")]
    Migration(#[from] common::db::MigrationError),
}

pub struct Application {
    settings: Settings,
    pool: Pool,
}

impl Application {
    /// Migrates the database, waiting for it while it is unreachable.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let pool = common::db::build_pool(&settings.database, "billing-app");
        store::migrate_when_reachable(&pool).await?;
        Ok(Self { settings, pool })
    }

    /// Consumes orders until `shutdown` completes, then stops taking new ones, finishes the
    /// ones already delivered, and returns.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        let token = CancellationToken::new();
        let consumer = consumer::run(&self.settings, &self.pool, token.clone());
        tokio::pin!(consumer);
        tokio::select! {
            () = &mut consumer => return,
            () = shutdown => {
                log::info!("shutting down: finishing the orders already delivered");
                token.cancel();
            }
        }
        consumer.await;
        self.pool.close();
        log::info!("billing-app stopped");
    }
}
