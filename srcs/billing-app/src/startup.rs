use std::{future::Future, net::TcpListener};

use actix_web::{dev::Server, web, HttpServer};
use common::{
    http as shared_http,
    metrics::{Metrics, PoolGauges},
};
use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

use crate::{configuration::Settings, consumer, metrics::ConsumerMetrics, routes, store};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("database migration failed: {0}")]
    Migration(#[from] common::db::MigrationError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

pub struct Application {
    settings: Settings,
    pool: Pool,
    consumer_metrics: ConsumerMetrics,
    server: Server,
    port: u16,
}

impl Application {
    /// Migrates the database (waiting for it while it is unreachable) and binds the HTTP
    /// listener; `run_until` starts consuming.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let pool = common::db::build_pool(&settings.database, "billing-app");
        store::migrate_when_reachable(&settings.database, &pool).await?;
        let metrics = Metrics::new("billing");
        let consumer_metrics = ConsumerMetrics::new(&metrics);
        let bind_error = |source| StartupError::Bind {
            addr: settings.http_bind_addr,
            source,
        };
        let listener = common::listener::listen(settings.http_bind_addr, "BILLING_HTTP_ADDR")
            .map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let port = addr.port();
        let server =
            serve(listener, pool.clone(), metrics, consumer_metrics.clone()).map_err(bind_error)?;
        log::info!("billing-app listening on {addr}");
        Ok(Self {
            settings,
            pool,
            consumer_metrics,
            server,
            port,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether (and what) the consumer is doing, for readiness outside HTTP.
    pub fn consumer_status(&self) -> ConsumerMetrics {
        self.consumer_metrics.clone()
    }

    /// Consumes orders until `shutdown` completes, then stops taking new ones, finishes the
    /// ones already delivered, stops the HTTP listener and returns.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        let server = self.server.handle();
        tokio::spawn(self.server);
        let token = CancellationToken::new();
        let consumer = consumer::run(
            &self.settings,
            &self.pool,
            &self.consumer_metrics,
            token.clone(),
        );
        tokio::pin!(consumer);
        tokio::select! {
            () = &mut consumer => {}
            () = shutdown => {
                log::info!("shutting down: finishing the orders already delivered");
                token.cancel();
                let limit = self.settings.shutdown_timeout;
                if tokio::time::timeout(limit, consumer).await.is_err() {
                    // Dropping the consumer drops its connection: the broker puts every
                    // unacknowledged delivery back in the queue, and billing is idempotent.
                    log::warn!(
                        "the consumer did not finish within {limit:?}; stopping anyway, its \
                         unacknowledged orders go back to the queue"
                    );
                }
            }
        }
        shared_http::stop_without_cutting_off(&server).await;
        self.pool.close();
        log::info!("billing-app stopped");
    }
}

fn serve(
    listener: TcpListener,
    pool: Pool,
    metrics: Metrics,
    consumer: ConsumerMetrics,
) -> std::io::Result<Server> {
    let pool_gauges = web::Data::new(PoolGauges::new(&metrics));
    let metrics = web::Data::new(metrics);
    let consumer = web::Data::new(consumer);
    let pool = web::Data::new(pool);
    let server = shared_http::with_client_deadlines(
        HttpServer::new(move || {
            shared_http::app()
                .app_data(pool.clone())
                .app_data(metrics.clone())
                .app_data(pool_gauges.clone())
                .app_data(consumer.clone())
                .configure(routes::configure)
        })
        // The process's shutdown is driven by run_until, which stops this server last.
        .disable_signals()
        .workers(1),
    )
    .shutdown_timeout(5)
    .listen(listener)?
    .run();
    Ok(server)
}
