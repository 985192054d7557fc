//! Building billing-app and running it (see `common::lifecycle`).

use std::future::Future;

use actix_web::{web, HttpServer};
use common::{
    http::{self as shared_http, HttpService},
    lifecycle::{Service, StartupError},
    metrics::Metrics,
};
use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

use database::PoolGauges;

use crate::{
    configuration::Settings,
    consumer::{self, ConsumerStatus},
    metrics::ConsumerMetrics,
    routes, store,
};

/// How long requests in progress on billing's HTTP listener may take to finish at a stop.
const HTTP_STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

pub struct Application {
    settings: Settings,
    pool: Pool,
    consumer_metrics: ConsumerMetrics,
    consumer_status: ConsumerStatus,
    http: HttpService,
}

impl Service for Application {
    const NAME: &'static str = "billing-app";
    type Settings = Settings;
    /// Even the local broker node may wait for its peers on other machines (a whole cluster
    /// restarted): the consumer connects in the background.
    const READY_STATUS: &'static str = "serving; /ready reports the database and the broker";

    /// Migrates the database (waiting for it while it is unreachable) and binds the HTTP
    /// listener; `run_until` starts consuming.
    async fn build(settings: Settings) -> Result<Self, StartupError> {
        let pool = database::build_pool(&settings.database, Self::NAME);
        store::migrate_when_reachable(&settings.database, &pool).await?;
        let listener = shared_http::listen(settings.http_bind_addr, "BILLING_HTTP_ADDR")?;
        let metrics = Metrics::new("billing");
        let consumer_metrics = ConsumerMetrics::new(&metrics);
        let consumer_status = ConsumerStatus::new(&metrics, &settings.brokers);
        let pool_gauges = web::Data::new(PoolGauges::new(&metrics));
        let metrics = web::Data::new(metrics);
        let status = web::Data::new(consumer_status.clone());
        let pool_data = web::Data::new(pool.clone());
        let server = HttpServer::new(move || {
            shared_http::app()
                .app_data(pool_data.clone())
                .app_data(metrics.clone())
                .app_data(pool_gauges.clone())
                .app_data(status.clone())
                .configure(routes::configure)
        })
        .workers(1);
        // SHUTDOWN_TIMEOUT_MS bounds the consumer's drain; the listener, stopped after it,
        // answers only short operations requests and gets a few seconds of its own.
        let http = shared_http::start(server, listener, HTTP_STOP_GRACE)?;
        log::info!("{} listening on {}", Self::NAME, http.addr());
        Ok(Self {
            settings,
            pool,
            consumer_metrics,
            consumer_status,
            http,
        })
    }

    fn port(&self) -> u16 {
        self.http.addr().port()
    }

    /// Consumes orders until `shutdown` completes, then stops taking new ones, finishes the
    /// ones already delivered (for at most `SHUTDOWN_TIMEOUT_MS`), stops the HTTP listener and
    /// returns.
    async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Self {
            settings,
            pool,
            consumer_metrics,
            consumer_status,
            http,
        } = self;
        let consuming = async {
            let token = CancellationToken::new();
            let consumer = consumer::run(
                &settings,
                &pool,
                &consumer_metrics,
                &consumer_status,
                token.clone(),
            );
            tokio::pin!(consumer);
            tokio::select! {
                () = &mut consumer => {}
                () = shutdown => {
                    log::info!("shutting down: finishing the orders already delivered");
                    token.cancel();
                    let limit = settings.shutdown_timeout;
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
        };
        // The HTTP listener (readiness, metrics, order status) stops last.
        let result = http.serve_until(consuming).await;
        pool.close();
        log::info!("{} stopped", Self::NAME);
        result
    }
}
