//! A fresh database per test, cloned from a template migrated once per schema version
//! (`CREATE DATABASE .. TEMPLATE ..` takes milliseconds; migrating every time would not).

use std::future::Future;

use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

use crate::required_env;

/// Admin URL of the test server (a role with CREATEDB), from `TEST_DATABASE_URL`.
pub fn test_database_url() -> String {
    required_env("TEST_DATABASE_URL")
}

/// Every test database name starts with this, so `scripts/test.sh` can drop leftovers.
const PREFIX: &str = "movie_test_";

pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("cannot connect to the test PostgreSQL ({e}); run scripts/test.sh")
        });
    tokio::spawn(connection);
    client
}

fn url_for(database: &str) -> String {
    let mut config: tokio_postgres::Config =
        test_database_url().parse().expect("TEST_DATABASE_URL");
    config.dbname(database);
    // tokio_postgres::Config has no Display; rebuild a URL from its parts.
    let user = config.get_user().expect("TEST_DATABASE_URL names a user");
    let password = config
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("postgres://{user}:{password}@{host}:{port}/{database}")
}

impl TestDatabase {
    /// A new, empty-but-migrated database. `service` names the template family, `fingerprint`
    /// identifies the schema, `migrate` brings a database at `url` up to it (the service's own
    /// migration code, so tests exercise it too).
    pub async fn create<F, Fut>(service: &str, fingerprint: &str, migrate: F) -> Self
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = ()>,
    {
        let admin = connect(&test_database_url()).await;
        let template = format!("{PREFIX}tpl_{service}_{fingerprint}");
        // One test process at a time builds the template; the others wait here, then clone it.
        admin
            .execute("SELECT pg_advisory_lock(hashtext($1))", &[&template])
            .await
            .expect("advisory lock");
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&template])
            .await
            .expect("look up template")
            .is_some();
        if !exists {
            admin
                .batch_execute(&format!("CREATE DATABASE \"{template}\""))
                .await
                .expect("create template database");
            migrate(url_for(&template)).await;
        }
        admin
            .execute("SELECT pg_advisory_unlock(hashtext($1))", &[&template])
            .await
            .expect("advisory unlock");

        let name = format!("{PREFIX}{service}_{}", Uuid::new_v4().simple());
        admin
            .batch_execute(&format!(
                "CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""
            ))
            .await
            .expect("clone template database");
        Self {
            url: url_for(&name),
            name,
        }
    }

    /// A connection to this database, for the test's own checks.
    pub async fn client(&self) -> Client {
        connect(&self.url).await
    }

    /// Makes the database refuse connections and drops the open ones: a database outage for
    /// this test alone.
    pub async fn take_offline(&self) {
        self.alter("ALLOW_CONNECTIONS false").await;
        self.end_sessions().await;
    }

    pub async fn bring_online(&self) {
        self.alter("ALLOW_CONNECTIONS true").await;
    }

    /// Read-only for new sessions (a standby not yet promoted, to a client), the present ones
    /// ended; `false` makes it writable again the same way.
    pub async fn set_read_only(&self, read_only: bool) {
        self.alter(&format!("SET default_transaction_read_only = {read_only}"))
            .await;
        self.end_sessions().await;
    }

    async fn alter(&self, change: &str) {
        let admin = connect(&test_database_url()).await;
        admin
            .batch_execute(&format!("ALTER DATABASE \"{}\" {change}", self.name))
            .await
            .unwrap_or_else(|e| panic!("ALTER DATABASE {change}: {e}"));
    }

    async fn end_sessions(&self) {
        let admin = connect(&test_database_url()).await;
        admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                &[&self.name],
            )
            .await
            .expect("terminate connections");
    }
}
