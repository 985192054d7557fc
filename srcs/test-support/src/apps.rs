//! A service running inside the test's process, through the same lifecycle as its binary, and
//! each service's database.

use std::time::Duration;

use common::{config::Env, lifecycle::Service};
use database::{build_pool, DatabaseSettings};
use tokio::{sync::oneshot, task::JoinHandle};

use crate::TestDatabase;

/// A running service; [`RunningApp::stop`] shuts it down as SIGTERM would. Dropped without a
/// stop, it runs until the end of the test.
pub struct RunningApp {
    /// Its HTTP listener's address on loopback...
    pub addr: std::net::SocketAddr,
    /// ...and as a base URL, `http://127.0.0.1:<port>`.
    pub address: String,
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<std::io::Result<()>>,
}

impl RunningApp {
    /// Builds the service from `settings` and runs it.
    pub async fn start<S: Service + Send + 'static>(settings: S::Settings) -> Self {
        crate::init_logging();
        let app = S::build(settings)
            .await
            .unwrap_or_else(|e| panic!("{} builds: {e}", S::NAME));
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], app.port()));
        let address = format!("http://{addr}");
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(app.run_until(async move {
            // Dropped without `stop`: it runs until the test's runtime ends.
            if stopped.await.is_err() {
                std::future::pending::<()>().await;
            }
        }));
        Self {
            addr,
            address,
            stop: Some(stop),
            handle,
        }
    }

    /// A URL on its HTTP listener.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Stops it as SIGTERM would, and waits (at most 20 s) until it has finished.
    pub async fn stop(mut self) {
        let _ = self.stop.take().expect("stopped once").send(());
        tokio::time::timeout(Duration::from_secs(20), self.handle)
            .await
            .expect("the service stops within 20 s")
            .expect("the service's task ends cleanly")
            .expect("the service stops without an error");
    }
}

/// A database migrated by `migrate` (the service's own migration code, so tests exercise it).
async fn migrated<F, Fut>(service: &str, fingerprint: &str, migrate: F) -> TestDatabase
where
    F: FnOnce(deadpool_postgres::Pool) -> Fut,
    Fut: std::future::Future<Output = Result<(), database::MigrationError>>,
{
    TestDatabase::create(service, fingerprint, |url| async move {
        let env = Env::given([("DATABASE_URL", url)]);
        let settings = DatabaseSettings::read(&env).expect("a test database URL");
        let pool = build_pool(&settings, "migrations");
        migrate(pool.clone()).await.expect("migrations apply");
        pool.close();
    })
    .await
}

/// A fresh, migrated catalogue database.
pub async fn inventory_database() -> TestDatabase {
    use inventory_app::store;
    migrated(
        "inventory",
        &store::schema_fingerprint(),
        |pool| async move { store::migrate(&pool).await },
    )
    .await
}

/// A fresh, migrated billing database.
pub async fn billing_database() -> TestDatabase {
    use billing_app::store;
    migrated("billing", &store::schema_fingerprint(), |pool| async move {
        store::migrate(&pool).await
    })
    .await
}
