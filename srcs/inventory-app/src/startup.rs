use std::net::TcpListener;

use actix_web::{dev::Server, web, HttpServer};
use common::{
    http as shared_http,
    metrics::{Metrics, PoolGauges},
};
use deadpool_postgres::Pool;

use crate::{configuration::Settings, routes, store};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("database migration failed: {0}")]
    Migration(#[from] common::db::MigrationError),
}

pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Migrates the database (waiting for it while it is unreachable), binds the listener and
    /// builds the server; `run_until_stopped` serves until SIGTERM/SIGINT.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let pool = common::db::build_pool(&settings.database, "inventory-app");
        store::migrate_when_reachable(&settings.database, &pool).await?;
        let bind_error = |source| StartupError::Bind {
            addr: settings.bind_addr,
            source,
        };
        let listener = common::listener::listen(settings.bind_addr, "INVENTORY_BIND_ADDR")
            .map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let server = serve(listener, pool, &settings).map_err(bind_error)?;
        log::info!("inventory-app listening on {addr}");
        Ok(Self {
            port: addr.port(),
            server,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM/SIGINT, then finishes the requests in progress.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        shared_http::serve_until_signal(self.server).await
    }
}

fn serve(listener: TcpListener, pool: Pool, settings: &Settings) -> std::io::Result<Server> {
    let metrics = Metrics::new("inventory");
    let pool_gauges = web::Data::new(PoolGauges::new(&metrics));
    let metrics = web::Data::new(metrics);
    let pool = web::Data::new(pool);
    let admin_token = web::Data::new(settings.admin_token.clone());
    let server = shared_http::with_client_deadlines(HttpServer::new(move || {
        shared_http::app()
            .app_data(pool.clone())
            .app_data(admin_token.clone())
            .app_data(metrics.clone())
            .app_data(pool_gauges.clone())
            .configure(routes::configure)
    }))
    .shutdown_timeout(settings.shutdown_timeout.as_secs().max(1))
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(server)
}
