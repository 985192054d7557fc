//! What operations see of a database: its readiness check and its pool's gauges.

use actix_web::{web, HttpResponse};
use deadpool_postgres::Pool;
use prometheus::IntGauge;

use common::metrics::{exposition, Metrics};

/// Whether the database answers `SELECT 1` within `timeout`.
pub async fn is_up(pool: &Pool, timeout: std::time::Duration) -> bool {
    let check = async {
        let client = pool.get().await.ok()?;
        client.simple_query("SELECT 1").await.ok()
    };
    matches!(tokio::time::timeout(timeout, check).await, Ok(Some(_)))
}

/// Gauges of a database pool, refreshed at every scrape.
#[derive(Clone)]
pub struct PoolGauges {
    size: IntGauge,
    available: IntGauge,
    waiting: IntGauge,
}

impl PoolGauges {
    pub fn new(metrics: &Metrics) -> Self {
        Self {
            size: metrics.gauge(
                "db_pool_connections",
                "Connections open in the database pool.",
            ),
            available: metrics.gauge(
                "db_pool_available",
                "Idle connections in the database pool.",
            ),
            waiting: metrics.gauge(
                "db_pool_waiting",
                "Requests waiting for a database connection.",
            ),
        }
    }

    pub(crate) fn refresh(&self, pool: &Pool) {
        let status = pool.status();
        self.size.set(status.size as i64);
        self.available.set(status.available as i64);
        self.waiting.set(status.waiting as i64);
    }
}

/// `GET /metrics` of a service with a database pool: refreshes the pool gauges, then renders.
pub async fn scrape_with_pool(
    metrics: web::Data<Metrics>,
    pool_gauges: web::Data<PoolGauges>,
    pool: web::Data<Pool>,
) -> HttpResponse {
    pool_gauges.refresh(&pool);
    exposition(&metrics)
}
