//! Rate limiting per client address on the API routes (`/api/...`), so one client cannot starve
//! the others. Health, readiness and metrics are never limited.

use std::{net::IpAddr, num::NonZeroU32, sync::Arc, time::Duration};

use actix_web::{
    body::{EitherBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::StatusCode,
    middleware::Next,
    web,
};
use common::problem::Problem;
use governor::{
    clock::{Clock, DefaultClock},
    DefaultKeyedRateLimiter, Quota, RateLimiter,
};

#[derive(Clone)]
pub struct RateLimit {
    /// `None`: rate limiting is off.
    limiter: Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>,
}

impl RateLimit {
    pub fn disabled() -> Self {
        Self { limiter: None }
    }

    /// `per_second` requests per second per address, with bursts of up to `burst`.
    pub fn new(per_second: NonZeroU32, burst: NonZeroU32) -> Self {
        let limiter = Arc::new(RateLimiter::keyed(
            Quota::per_second(per_second).allow_burst(burst),
        ));
        // Forget idle addresses now and then, so the table does not grow without bound.
        let sweeper = Arc::downgrade(&limiter);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                match sweeper.upgrade() {
                    Some(limiter) => limiter.retain_recent(),
                    None => return,
                }
            }
        });
        Self {
            limiter: Some(limiter),
        }
    }

    /// `None` if allowed, else how long the client should wait.
    fn check(&self, client: IpAddr) -> Option<Duration> {
        self.limiter
            .as_ref()?
            .check_key(&client)
            .err()
            .map(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// actix-web middleware (use with `middleware::from_fn`); the limiter is app data.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let limit = req.app_data::<web::Data<RateLimit>>().cloned();
    let client = req.peer_addr().map(|addr| addr.ip());
    if let (Some(limit), Some(client), true) = (limit, client, req.path().starts_with("/api/")) {
        if let Some(wait) = limit.check(client) {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let response = Problem::new(StatusCode::TOO_MANY_REQUESTS)
                .with_detail(format!("Too many requests from {client}; slow down."))
                .with_retry_after(seconds.max(1))
                .to_response();
            return Ok(req.into_response(response).map_into_right_body());
        }
    }
    Ok(next.call(req).await?.map_into_left_body())
}
