//! Rate limiting per client address, so one client cannot starve the others. Which routes are
//! limited is decided where routes are registered (`routes::configure`), on the route the router
//! chose: however a client spells a path, the route it reaches is limited the same.

use std::{
    net::{IpAddr, Ipv6Addr},
    num::NonZeroU32,
    sync::Arc,
    time::Duration,
};

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
pub(crate) struct RateLimit {
    /// `None`: rate limiting is off.
    limiter: Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>,
}

impl RateLimit {
    pub(crate) fn disabled() -> Self {
        Self { limiter: None }
    }

    /// `per_second` requests per second per address, with bursts of up to `burst`.
    pub(crate) fn new(per_second: NonZeroU32, burst: NonZeroU32) -> Self {
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
        let client = client_key(client);
        self.limiter
            .as_ref()?
            .check_key(&client)
            .err()
            .map(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// The address a client is counted under. An IPv6 client usually holds a whole /64 and could
/// pick a new address per request, so IPv6 addresses count by their /64; an IPv4 address mapped
/// into IPv6 counts as itself.
fn client_key(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

/// actix-web middleware (use with `middleware::from_fn`) for the routes that are limited; the
/// limiter is app data. The client is the TCP peer: headers such as `X-Forwarded-For` are the
/// client's to choose, so they never decide.
pub(crate) async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let limit = req.app_data::<web::Data<RateLimit>>().cloned();
    let client = req.peer_addr().map(|addr| addr.ip());
    if let (Some(limit), Some(client)) = (limit, client) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_counts_by_its_64_and_a_mapped_ipv4_as_itself() {
        let key = |text: &str| client_key(text.parse().unwrap());
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
    }
}
