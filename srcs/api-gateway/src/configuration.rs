use std::{net::SocketAddr, num::NonZeroU32, time::Duration};

use common::{
    amqp::{self, BrokerNodes, OrderQueue},
    catalogue_event,
    config::{ConfigError, Env, FromEnv},
};

use common::auth::AdminToken;

use crate::upstream::UpstreamLimits;

/// The longest `CATALOGUE_CACHE_TTL_MS`: how stale a read may get while the events are lost.
const MAX_CACHE_TTL: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, Clone)]
pub struct Settings {
    /// `GATEWAY_BIND_ADDR` (default `0.0.0.0:8080`: the gateway is the public entry).
    pub bind_addr: SocketAddr,
    /// `INVENTORY_URL`: inventory-app's instances, comma-separated, e.g. `http://127.0.0.1:8081`.
    pub inventory_urls: Vec<String>,
    /// `BILLING_URL`: billing-app's HTTP listeners (order status), comma-separated, e.g.
    /// `http://127.0.0.1:8082`.
    pub billing_urls: Vec<String>,
    /// How each instance of inventory or billing is called: `UPSTREAM_CONNECT_TIMEOUT_MS`,
    /// `UPSTREAM_TIMEOUT_MS`, `UPSTREAM_MAX_CONNECTIONS`, `UPSTREAM_QUEUE_TIMEOUT_MS`.
    pub upstream: UpstreamLimits,
    /// `AMQP_URL`: the broker nodes, comma-separated, the local one first (with credentials:
    /// never logged).
    pub brokers: BrokerNodes,
    /// `BILLING_QUEUE` (default `billing_queue`).
    pub queue: OrderQueue,
    /// `AMQP_CONNECT_TIMEOUT_MS`.
    pub amqp_connect_timeout: Duration,
    /// `PUBLISH_TIMEOUT_MS`: waiting for the broker to confirm an order.
    pub publish_timeout: Duration,
    /// `SHUTDOWN_TIMEOUT_MS`: how long in-flight requests may take to finish after SIGTERM.
    pub shutdown_timeout: Duration,
    /// `ADMIN_TOKEN`: required as `Authorization: Bearer ...` on catalogue writes.
    pub admin_token: AdminToken,
    /// `RATE_LIMIT_PER_SECOND` and `RATE_LIMIT_BURST` per client address on `/api/...`
    /// (default 50 and 100); `RATE_LIMIT_PER_SECOND=0` turns it off.
    pub rate_limit: Option<(NonZeroU32, NonZeroU32)>,
    /// The catalogue cache; `None` when `CATALOGUE_CACHE_MB=0`.
    pub cache: Option<CacheSettings>,
}

/// The catalogue cache (see `catalogue_cache`).
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// `CATALOGUE_CACHE_MB` (default 16): the most the cached answers may hold.
    pub max_bytes: u64,
    /// `CATALOGUE_CACHE_TTL_MS` (default 30,000): the longest an answer is kept, and so the
    /// most it can be stale while the change events do not arrive.
    pub ttl: Duration,
    /// `CATALOGUE_EXCHANGE` (default `catalogue.events`): where inventory publishes them.
    pub exchange: String,
}

impl FromEnv for Settings {
    /// Every setting, checked; `env` is the process environment in production.
    fn read(env: &Env) -> Result<Self, ConfigError> {
        let inventory_url: String =
            env.or_default("INVENTORY_URL", "http://127.0.0.1:8081".to_owned())?;
        let billing_url: String =
            env.or_default("BILLING_URL", "http://127.0.0.1:8082".to_owned())?;
        let queue: String = env.or_default("BILLING_QUEUE", OrderQueue::DEFAULT_NAME.to_owned())?;
        Ok(Self {
            bind_addr: env
                .or_default("GATEWAY_BIND_ADDR", SocketAddr::from(([0, 0, 0, 0], 8080)))?,
            inventory_urls: parse_base_urls(&inventory_url)
                .map_err(|e| ConfigError::invalid("INVENTORY_URL", e))?,
            billing_urls: parse_base_urls(&billing_url)
                .map_err(|e| ConfigError::invalid("BILLING_URL", e))?,
            upstream: UpstreamLimits {
                connect_timeout: env.millis_or_default("UPSTREAM_CONNECT_TIMEOUT_MS", 1_000)?,
                request_timeout: env.millis_or_default("UPSTREAM_TIMEOUT_MS", 10_000)?,
                max_connections: env.count_or_default("UPSTREAM_MAX_CONNECTIONS", 32, 1..=4096)?,
                queue_timeout: env.millis_or_default("UPSTREAM_QUEUE_TIMEOUT_MS", 2_000)?,
            },
            brokers: env.required("AMQP_URL")?,
            queue: OrderQueue::new(&queue).map_err(|e| ConfigError::invalid("BILLING_QUEUE", e))?,
            amqp_connect_timeout: env.millis_or_default("AMQP_CONNECT_TIMEOUT_MS", 5_000)?,
            publish_timeout: env.millis_or_default("PUBLISH_TIMEOUT_MS", 5_000)?,
            shutdown_timeout: env.millis_or_default("SHUTDOWN_TIMEOUT_MS", 10_000)?,
            admin_token: env.required("ADMIN_TOKEN")?,
            rate_limit: rate_limit(env)?,
            cache: cache(env)?,
        })
    }
}

fn cache(env: &Env) -> Result<Option<CacheSettings>, ConfigError> {
    let megabytes: u64 = env.or_default("CATALOGUE_CACHE_MB", 16)?;
    if megabytes == 0 {
        return Ok(None);
    }
    if megabytes > 64 * 1024 {
        return Err(ConfigError::invalid(
            "CATALOGUE_CACHE_MB",
            "must be at most 65536 (64 GiB)",
        ));
    }
    let ttl = env.millis_or_default("CATALOGUE_CACHE_TTL_MS", 30_000)?;
    if ttl.is_zero() {
        return Err(ConfigError::invalid(
            "CATALOGUE_CACHE_TTL_MS",
            "must be at least 1 (turn the cache off with CATALOGUE_CACHE_MB=0)",
        ));
    }
    if ttl > MAX_CACHE_TTL {
        return Err(ConfigError::invalid(
            "CATALOGUE_CACHE_TTL_MS",
            "must be at most 86400000 (a day): it is how stale a read may be while the events are lost",
        ));
    }
    let exchange: String = env.or_default(
        "CATALOGUE_EXCHANGE",
        catalogue_event::DEFAULT_EXCHANGE.to_owned(),
    )?;
    amqp::check_name(&exchange).map_err(|e| ConfigError::invalid("CATALOGUE_EXCHANGE", e))?;
    Ok(Some(CacheSettings {
        max_bytes: megabytes * 1024 * 1024,
        ttl,
        exchange,
    }))
}

fn rate_limit(env: &Env) -> Result<Option<(NonZeroU32, NonZeroU32)>, ConfigError> {
    let per_second: u32 = env.or_default("RATE_LIMIT_PER_SECOND", 50)?;
    let Some(per_second) = NonZeroU32::new(per_second) else {
        return Ok(None);
    };
    let burst: u32 = env.or_default("RATE_LIMIT_BURST", per_second.get() * 2)?;
    let burst = NonZeroU32::new(burst)
        .ok_or_else(|| ConfigError::invalid("RATE_LIMIT_BURST", "must be at least 1"))?;
    Ok(Some((per_second, burst)))
}

/// A comma-separated list of [`parse_base_url`]s: the instances of one service, each once.
fn parse_base_urls(text: &str) -> Result<Vec<String>, String> {
    let urls = text
        .split(',')
        .map(parse_base_url)
        .collect::<Result<Vec<_>, _>>()?;
    for (position, url) in urls.iter().enumerate() {
        if urls[..position].contains(url) {
            return Err(format!("lists {url} twice"));
        }
    }
    Ok(urls)
}

/// An `http://host:port` base URL (request paths are appended), checked by the URL parser: a
/// port out of range or a malformed host stops the service at start, not each request later.
fn parse_base_url(text: &str) -> Result<String, String> {
    let text = text.trim();
    let shape = || format!("{text:?} must be http://host:port with no path");
    let url = reqwest::Url::parse(text).map_err(|e| format!("{text:?}: {e}"))?;
    let host = url.host_str().filter(|host| !host.is_empty());
    match host {
        Some(host)
            if url.scheme() == "http"
                && url.username().is_empty()
                && url.password().is_none()
                && url.path() == "/"
                && url.query().is_none()
                && url.fragment().is_none() =>
        {
            Ok(match url.port() {
                Some(port) => format!("http://{host}:{port}"),
                None => format!("http://{host}"),
            })
        }
        _ => Err(shape()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(
            parse_base_url("http://10.0.0.1:8081/").unwrap(),
            "http://10.0.0.1:8081"
        );
        assert!(parse_base_url("10.0.0.1:8081").is_err());
        assert!(parse_base_url("http://host:1/api").is_err());
        assert!(parse_base_url("http://").is_err());
        assert_eq!(
            parse_base_urls("http://a:1, http://b:2/").unwrap(),
            ["http://a:1", "http://b:2"]
        );
        assert!(parse_base_urls("http://a:1,").is_err());
        assert!(parse_base_url("http://127.0.0.1:99999").is_err());
        assert!(parse_base_url("http://user:pw@host:1").is_err());
        assert!(parse_base_url("http://host:1?x=1").is_err());
        assert!(parse_base_url("https://host:1").is_err());
        assert!(parse_base_url("http://ho st:1").is_err());
        assert!(parse_base_urls("http://a:1,http://a:1/").is_err());
        assert_eq!(
            parse_base_url("http://[::1]:8081").unwrap(),
            "http://[::1]:8081"
        );
    }
}
