use std::net::TcpListener;

use actix_web::{dev::Server, web, HttpServer};
use common::{http as shared_http, metrics::Metrics};

use crate::{
    configuration::Settings,
    metrics::PublishMetrics,
    publisher::{OrderPublisher, PublisherSettings},
    rate_limit::RateLimit,
    routes,
    upstream::{Upstream, UpstreamMetrics, UpstreamTarget},
};

/// The services behind the gateway, as one actix worker reaches them.
pub struct Upstreams {
    pub inventory: Upstream,
    pub billing: Upstream,
}

/// The services behind the gateway, shared by the workers.
struct UpstreamTargets {
    inventory: UpstreamTarget,
    billing: UpstreamTarget,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

pub struct Application {
    port: u16,
    server: Server,
    publisher: OrderPublisher,
}

impl Application {
    /// Binds the listener and starts the broker connection's supervisor. Neither inventory nor
    /// the broker needs to be up yet: requests that need them get 502/503 until they are.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let metrics = Metrics::new("gateway");
        let publisher = OrderPublisher::start(
            PublisherSettings {
                amqp_url: settings.amqp_url.clone(),
                queue: settings.queue.clone(),
                connect_timeout: settings.amqp_connect_timeout,
                publish_timeout: settings.publish_timeout,
            },
            PublishMetrics::new(&metrics),
        );
        let upstream_metrics = UpstreamMetrics::new(&metrics);
        let upstream = |name, url: &String| {
            UpstreamTarget::new(
                name,
                url.clone(),
                settings.upstream_connect_timeout,
                settings.upstream_timeout,
                upstream_metrics.clone(),
            )
        };
        let upstreams = UpstreamTargets {
            inventory: upstream("inventory", &settings.inventory_url),
            billing: upstream("billing", &settings.billing_url),
        };
        let bind_error = |source| StartupError::Bind {
            addr: settings.bind_addr,
            source,
        };
        let listener = common::listener::listen(settings.bind_addr, "GATEWAY_BIND_ADDR")
            .map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let server = serve(listener, upstreams, publisher.clone(), metrics, &settings)
            .map_err(bind_error)?;
        log::info!("api-gateway listening on {addr}");
        Ok(Self {
            port: addr.port(),
            server,
            publisher,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn publisher(&self) -> &OrderPublisher {
        &self.publisher
    }

    /// Serves until SIGTERM/SIGINT, lets in-flight requests finish, then closes the broker
    /// connection.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = shared_http::serve_until_signal(self.server).await;
        self.publisher.close();
        result
    }
}

fn serve(
    listener: TcpListener,
    upstreams: UpstreamTargets,
    publisher: OrderPublisher,
    metrics: Metrics,
    settings: &Settings,
) -> std::io::Result<Server> {
    let publisher = web::Data::new(publisher);
    let recent_keys = web::Data::new(crate::idempotency::RecentKeys::default());
    let metrics = web::Data::new(metrics);
    let admin_token = web::Data::new(settings.admin_token.clone());
    let rate_limit = web::Data::new(match settings.rate_limit {
        Some((per_second, burst)) => RateLimit::new(per_second, burst),
        None => RateLimit::disabled(),
    });
    let server = shared_http::with_client_deadlines(HttpServer::new(move || {
        shared_http::app()
            .app_data(web::Data::new(Upstreams {
                inventory: upstreams.inventory.for_this_worker(),
                billing: upstreams.billing.for_this_worker(),
            }))
            .app_data(publisher.clone())
            .app_data(recent_keys.clone())
            .app_data(metrics.clone())
            .app_data(admin_token.clone())
            .app_data(rate_limit.clone())
            .configure(routes::configure)
    }))
    .shutdown_timeout(settings.shutdown_timeout.as_secs().max(1))
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(server)
}
