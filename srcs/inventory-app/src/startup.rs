//! Building inventory-app and running it (see `common::lifecycle`).

use std::future::Future;

use actix_web::{web, HttpServer};
use common::{
    http::{self as shared_http, HttpService},
    lifecycle::{Service, StartupError},
    metrics::Metrics,
};

use database::PoolGauges;

use crate::{
    configuration::Settings,
    relay::{Relay, Wake},
    routes, store,
};

pub struct Application {
    http: HttpService,
    relay: Relay,
    shutdown_timeout: std::time::Duration,
}

impl Service for Application {
    const NAME: &'static str = "inventory-app";
    type Settings = Settings;
    const READY_STATUS: &'static str = "serving the catalogue";

    /// Migrates the database (waiting for it while it is unreachable), binds the listener,
    /// builds the server and starts the outbox relay (the broker need not be up yet: events
    /// wait in the outbox).
    async fn build(settings: Settings) -> Result<Self, StartupError> {
        let pool = database::build_pool(&settings.database, Self::NAME);
        store::migrate_when_reachable(&settings.database, &pool).await?;
        let listener = shared_http::listen(settings.bind_addr, "INVENTORY_BIND_ADDR")?;
        let metrics = Metrics::new("inventory");
        let pool_gauges = web::Data::new(PoolGauges::new(&metrics));
        let metrics = web::Data::new(metrics);
        let wake = Wake::default();
        let relay = Relay::start(
            settings.events.clone(),
            pool.clone(),
            wake.clone(),
            &metrics,
        );
        let pool = web::Data::new(pool);
        let wake = web::Data::new(wake);
        let admin_token = web::Data::new(settings.admin_token.clone());
        let server = HttpServer::new(move || {
            shared_http::app()
                .app_data(pool.clone())
                .app_data(wake.clone())
                .app_data(admin_token.clone())
                .app_data(metrics.clone())
                .app_data(pool_gauges.clone())
                .configure(routes::configure)
        });
        let http = shared_http::start(server, listener, settings.shutdown_timeout)?;
        log::info!("{} listening on {}", Self::NAME, http.addr());
        Ok(Self {
            http,
            relay,
            shutdown_timeout: settings.shutdown_timeout,
        })
    }

    fn port(&self) -> u16 {
        self.http.addr().port()
    }

    /// Serves until `shutdown`, then finishes the requests in progress, then the relay's batch
    /// in progress.
    async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let result = self.http.serve_until(shutdown).await;
        self.relay.stop(self.shutdown_timeout).await;
        result
    }
}
