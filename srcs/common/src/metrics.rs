//! Prometheus metrics: one registry per application instance (so tests running several apps in
//! one process count separately), HTTP request metrics for every route, and the `/metrics`
//! endpoint in the text exposition format.

use std::time::Instant;

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::header,
    middleware::Next,
    web, HttpResponse,
};
use prometheus::{
    core::Collector, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets (seconds) from 0.5 ms to 10 s: the services answer in milliseconds, and
/// their timeouts are a few seconds.
pub(crate) const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// What the release pipeline named this build (`MOVIE_BUILD_ID` when it was compiled), so an
/// operator can tell which build each machine runs.
pub const BUILD_ID: &str = match option_env!("MOVIE_BUILD_ID") {
    Some(id) => id,
    None => "unnamed",
};

/// A service's metrics registry plus the HTTP request metrics every service has.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
}

impl Metrics {
    /// A registry whose metric names start with `service` (e.g. `gateway_http_requests_total`).
    pub fn new(service: &str) -> Self {
        let registry =
            Registry::new_custom(Some(service.to_owned()), None).expect("a valid metric prefix");
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process metrics register once");
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests answered, by route, method and status.",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time to answer an HTTP request.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route", "method"],
        )
        .expect("valid metric");
        let metrics = Self {
            registry,
            http_requests,
            http_duration,
        };
        metrics.register(metrics.http_requests.clone());
        metrics.register(metrics.http_duration.clone());
        metrics
            .gauge_vec(
                "build_info",
                "Always 1: which build is running (the version, and MOVIE_BUILD_ID at build time).",
                &["version", "build"],
            )
            .with_label_values(&[env!("CARGO_PKG_VERSION"), BUILD_ID])
            .set(1);
        metrics
    }

    /// Registers a service-specific collector and returns it.
    pub fn register<C: Collector + Clone + 'static>(&self, collector: C) -> C {
        self.registry
            .register(Box::new(collector.clone()))
            .expect("each metric is registered once");
        collector
    }

    pub fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.register(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    pub fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.register(IntCounter::new(name, help).expect("valid metric"))
    }

    pub fn histogram(&self, name: &str, help: &str) -> Histogram {
        self.register(
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()))
                .expect("valid metric"),
        )
    }

    pub fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.register(IntGauge::new(name, help).expect("valid metric"))
    }

    pub fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.register(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    pub fn histogram_vec(&self, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
        self.register(
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                labels,
            )
            .expect("valid metric"),
        )
    }

    /// The text exposition of every metric.
    pub(crate) fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("encoding to a Vec cannot fail");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }

    fn observe(&self, route: &str, method: &str, status: &str, seconds: f64) {
        self.http_requests
            .with_label_values(&[route, method, status])
            .inc();
        self.http_duration
            .with_label_values(&[route, method])
            .observe(seconds);
    }
}

/// actix-web middleware (use with `middleware::from_fn`) counting and timing every request by
/// its route pattern (`/api/movies/{id}`, not the raw path, so ids do not explode the series).
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let started = Instant::now();
    // Standard methods clone without allocating.
    let method = req.method().clone();
    let response = next.call(req).await?;
    if let Some(metrics) = metrics {
        let route = response.request().match_pattern();
        metrics.observe(
            route.as_deref().unwrap_or("unmatched"),
            method.as_str(),
            response.status().as_str(),
            started.elapsed().as_secs_f64(),
        );
    }
    Ok(response)
}

/// `GET /metrics` of a service whose metrics are all in its registry.
pub async fn scrape(metrics: web::Data<Metrics>) -> HttpResponse {
    exposition(&metrics)
}

/// The `/metrics` response.
pub fn exposition(metrics: &Metrics) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, TextEncoder::new().format_type()))
        .body(metrics.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prefixed_metrics() {
        let metrics = Metrics::new("demo");
        metrics.observe("/x/{id}", "GET", "200", 0.002);
        let text = metrics.render();
        assert!(
            text.contains(
                r#"demo_http_requests_total{method="GET",route="/x/{id}",status="200"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("demo_http_request_duration_seconds_bucket"));
    }
}
