//! Building the gateway and running it (see `common::lifecycle`).

use std::{future::Future, net::TcpListener, sync::Arc};

use actix_web::{web, HttpServer};
use common::{
    http::{self as shared_http, HttpService},
    lifecycle::{Service, StartupError},
    metrics::Metrics,
};

use tokio_util::sync::CancellationToken;

use crate::{
    catalogue_cache::CatalogueCache,
    catalogue_events::{self, SubscriptionSettings},
    configuration::Settings,
    idempotency::RecentKeys,
    metrics::PublishMetrics,
    publisher::{OrderPublisher, PublisherSettings},
    rate_limit::RateLimit,
    routes,
    upstream::{UpstreamMetrics, UpstreamName, UpstreamTarget, UpstreamTargets},
};

pub struct Application {
    http: HttpService,
    publisher: OrderPublisher,
    /// Ends the catalogue events' subscription.
    stop_subscription: CancellationToken,
}

impl Service for Application {
    const NAME: &'static str = "api-gateway";
    type Settings = Settings;
    /// The broker and inventory may live on machines still booting; orders get 503 until a
    /// broker answers.
    const READY_STATUS: &'static str = "serving; /ready reports the broker and inventory";

    /// Binds the listener and starts the broker connection's supervisor. Neither inventory nor
    /// the broker needs to be up yet: requests that need them get 502/503 until they are.
    async fn build(settings: Settings) -> Result<Self, StartupError> {
        let metrics = Metrics::new("gateway");
        let publisher = OrderPublisher::start(
            PublisherSettings {
                brokers: settings.brokers.clone(),
                queue: settings.queue.clone(),
                connect_timeout: settings.amqp_connect_timeout,
                publish_timeout: settings.publish_timeout,
            },
            PublishMetrics::new(&metrics, &settings.brokers),
        );
        let upstream_metrics = UpstreamMetrics::new(&metrics);
        let instances = |name, urls: &[String]| {
            urls.iter()
                .map(|url| {
                    UpstreamTarget::new(
                        name,
                        url.clone(),
                        settings.upstream,
                        upstream_metrics.clone(),
                    )
                })
                .collect()
        };
        let upstreams = UpstreamTargets {
            inventory: instances(UpstreamName::Inventory, &settings.inventory_urls),
            billing: instances(UpstreamName::Billing, &settings.billing_urls),
        };
        let stop_subscription = CancellationToken::new();
        let cache = settings.cache.as_ref().map(|cache| {
            let cached = Arc::new(CatalogueCache::new(cache.max_bytes, cache.ttl, &metrics));
            catalogue_events::subscribe(
                SubscriptionSettings {
                    brokers: settings.brokers.clone(),
                    exchange: cache.exchange.clone(),
                    connect_timeout: settings.amqp_connect_timeout,
                },
                cached.clone(),
                &metrics,
                stop_subscription.clone(),
            );
            cached
        });
        let listener = shared_http::listen(settings.bind_addr, "GATEWAY_BIND_ADDR")?;
        let http = serve(
            listener,
            upstreams,
            publisher.clone(),
            cache,
            metrics,
            &settings,
        )?;
        log::info!("{} listening on {}", Self::NAME, http.addr());
        Ok(Self {
            http,
            publisher,
            stop_subscription,
        })
    }

    fn port(&self) -> u16 {
        self.http.addr().port()
    }

    /// Serves until `shutdown`, lets in-flight requests finish, then closes the broker
    /// connection.
    async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let result = self.http.serve_until(shutdown).await;
        self.publisher.close();
        self.stop_subscription.cancel();
        result
    }
}

fn serve(
    listener: TcpListener,
    upstreams: UpstreamTargets,
    publisher: OrderPublisher,
    cache: Option<Arc<CatalogueCache>>,
    metrics: Metrics,
    settings: &Settings,
) -> Result<HttpService, common::http::BindError> {
    let cache = cache.map(web::Data::from);
    let publisher = web::Data::new(publisher);
    let recent_keys = web::Data::new(RecentKeys::default());
    let metrics = web::Data::new(metrics);
    let admin_token = web::Data::new(settings.admin_token.clone());
    let rate_limit = web::Data::new(match settings.rate_limit {
        Some((per_second, burst)) => RateLimit::new(per_second, burst),
        None => RateLimit::disabled(),
    });
    let server = HttpServer::new(move || {
        let app = shared_http::app();
        let app = match &cache {
            Some(cache) => app.app_data(cache.clone()),
            None => app,
        };
        app.app_data(web::Data::new(upstreams.for_this_worker()))
            .app_data(publisher.clone())
            .app_data(recent_keys.clone())
            .app_data(metrics.clone())
            .app_data(admin_token.clone())
            .app_data(rate_limit.clone())
            .configure(routes::configure)
    });
    shared_http::start(server, listener, settings.shutdown_timeout)
}
