//! The services behind the gateway (inventory-app, billing-app's order status): one pooled
//! HTTP client each, with connect and request timeouts, and a faithful pass-through of status,
//! body and the headers that matter.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use actix_web::{
    http::{
        header::{HeaderName, HeaderValue},
        StatusCode,
    },
    web::Bytes,
    HttpRequest, HttpResponse,
};
use common::{
    request_id::{RequestId, REQUEST_ID_HEADER},
    telemetry::error_chain,
};
use prometheus::{HistogramVec, IntCounterVec, IntGaugeVec};
use tokio::sync::Semaphore;

use crate::{circuit_breaker::CircuitBreaker, error::GatewayError};

/// Consecutive failures that open an upstream's circuit, and how long it stays open before a
/// probe.
const BREAKER_THRESHOLD: u32 = 5;
const BREAKER_COOL_DOWN: Duration = Duration::from_secs(2);
/// How long a readiness probe's result answers `/ready` before the next probe.
const PROBE_REUSE: Duration = Duration::from_secs(1);

/// Request headers passed on to inventory (`authorization`: inventory checks the admin token of
/// a write again; the conditional headers: inventory answers 304 and 412).
const FORWARDED_REQUEST_HEADERS: [&str; 6] = [
    "content-type",
    "accept",
    "traceparent",
    "authorization",
    "if-none-match",
    "if-match",
];
/// Response headers passed back to the client.
const FORWARDED_RESPONSE_HEADERS: [&str; 7] = [
    "content-type",
    "location",
    "retry-after",
    "allow",
    "www-authenticate",
    "etag",
    "cache-control",
];
/// The largest answer is a 500-movie page; anything far beyond that is a fault.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// How the gateway calls each instance of a service behind it.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamLimits {
    pub connect_timeout: Duration,
    /// A whole request, answer included.
    pub request_timeout: Duration,
    /// At most this many requests at once to one instance from this gateway: whatever the
    /// number of clients, the instance sees a bounded number of requests and connections, and
    /// the gateway holds a bounded number of upstream buffers.
    pub max_connections: usize,
    /// How long a request beyond those waits for its turn before a 503.
    pub queue_timeout: Duration,
}

/// A service behind the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpstreamName {
    Inventory,
    Billing,
}

impl UpstreamName {
    /// Its `upstream` label in metrics and its name in logs.
    fn label(self) -> &'static str {
        match self {
            Self::Inventory => "inventory",
            Self::Billing => "billing",
        }
    }

    /// How problems name it to API clients.
    pub(crate) fn title(self) -> &'static str {
        match self {
            Self::Inventory => "catalogue",
            Self::Billing => "billing",
        }
    }
}

impl std::fmt::Display for UpstreamName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// How a call to a service behind the gateway failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamFailure {
    #[error("unreachable")]
    Unreachable(#[source] reqwest::Error),
    #[error("timed out")]
    Timeout(#[source] reqwest::Error),
    #[error("unusable answer")]
    BadAnswer(#[source] reqwest::Error),
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
    #[error("circuit open after repeated failures")]
    CircuitOpen,
    #[error("every connection busy for {0:?}")]
    Busy(Duration),
}

impl UpstreamFailure {
    /// The `kind` label of the upstream error metric.
    fn kind(&self) -> &'static str {
        match self {
            Self::Unreachable(_) => "unreachable",
            Self::Timeout(_) => "timeout",
            Self::BadAnswer(_) | Self::TooLarge(_) => "bad_answer",
            Self::CircuitOpen => "circuit_open",
            Self::Busy(_) => "busy",
        }
    }
}

/// The services behind the gateway, as one actix worker reaches them.
pub(crate) struct Upstreams {
    pub(crate) inventory: UpstreamGroup,
    pub(crate) billing: UpstreamGroup,
}

/// The services behind the gateway (each one or more instances), shared by the workers.
#[derive(Clone)]
pub(crate) struct UpstreamTargets {
    pub(crate) inventory: Vec<UpstreamTarget>,
    pub(crate) billing: Vec<UpstreamTarget>,
}

impl UpstreamTargets {
    /// This worker's [`Upstreams`].
    pub(crate) fn for_this_worker(&self) -> Upstreams {
        let group = |targets: &[UpstreamTarget]| UpstreamGroup {
            instances: targets
                .iter()
                .map(UpstreamTarget::for_this_worker)
                .collect(),
            next: AtomicUsize::new(0),
        };
        Upstreams {
            inventory: group(&self.inventory),
            billing: group(&self.billing),
        }
    }
}

/// The instances of one service. Calls go round-robin over them; a call that never reached an
/// instance (unreachable, or its circuit open) goes on to the next one, and so does a call that
/// may be repeated (GET, HEAD, PUT) and got no usable answer in time (an instance stopping
/// closes its connections; a hung one answers nothing): while one instance is down, stopping
/// or hung, every such call is answered by another (a hung one's after `UPSTREAM_TIMEOUT_MS`,
/// until its circuit opens).
pub(crate) struct UpstreamGroup {
    instances: Vec<Upstream>,
    next: AtomicUsize,
}

impl UpstreamGroup {
    /// [`Upstream::forward`] to one instance, or the next when it cannot be reached.
    pub(crate) async fn forward(
        &self,
        req: &HttpRequest,
        body: Bytes,
        request_id: &RequestId,
    ) -> Result<UpstreamAnswer, GatewayError> {
        // A client that left frees its slot (or its place in the queue for one) at once.
        tokio::select! {
            result = self.forward_to_an_instance(req, body, request_id) => result,
            () = common::connection_watch::client_gone(req) => Err(GatewayError::ClientGone),
        }
    }

    async fn forward_to_an_instance(
        &self,
        req: &HttpRequest,
        body: Bytes,
        request_id: &RequestId,
    ) -> Result<UpstreamAnswer, GatewayError> {
        let count = self.instances.len();
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let mut result = Err(GatewayError::Upstream {
            upstream: self.instances[0].target.name,
            failure: UpstreamFailure::CircuitOpen,
        });
        let repeatable = may_be_repeated(req);
        for instance in (0..count).map(|i| &self.instances[(first + i) % count]) {
            result = instance.forward(req, body.clone(), request_id).await;
            let next = match &result {
                Err(GatewayError::Upstream { failure, .. }) => match failure {
                    // Nothing reached this instance: another cannot do the request twice. Busy
                    // too: a hung instance holds all its slots until its circuit opens, and
                    // another instance likely has one free.
                    UpstreamFailure::Unreachable(_)
                    | UpstreamFailure::CircuitOpen
                    | UpstreamFailure::Busy(_) => true,
                    // A hung instance (or one whose machine is gone, the connections still
                    // pooled): a read waits once more elsewhere rather than fail.
                    UpstreamFailure::BadAnswer(_) | UpstreamFailure::Timeout(_) => repeatable,
                    UpstreamFailure::TooLarge(_) => false,
                },
                _ => false,
            };
            if !next {
                break;
            }
        }
        result
    }

    /// Whether any instance's `/health` answers 200 within `timeout`.
    pub(crate) async fn is_up(&self, timeout: Duration) -> bool {
        let probes = self
            .instances
            .iter()
            .map(|instance| instance.is_up(timeout));
        futures_util::future::join_all(probes)
            .await
            .into_iter()
            .any(|up| up)
    }
}

/// Upstream call metrics, shared by every upstream (labelled by its name).
#[derive(Clone)]
pub(crate) struct UpstreamMetrics {
    duration: HistogramVec,
    errors: IntCounterVec,
    breaker_state: IntGaugeVec,
}

impl UpstreamMetrics {
    pub(crate) fn new(metrics: &common::metrics::Metrics) -> Self {
        Self {
            duration: metrics.histogram_vec(
                "upstream_request_duration_seconds",
                "Time for a service behind the gateway to answer.",
                &["upstream"],
            ),
            errors: metrics.counter_vec(
                "upstream_errors_total",
                "Calls to a service behind the gateway that got no usable answer.",
                &["upstream", "kind"],
            ),
            breaker_state: metrics.register(
                IntGaugeVec::new(
                    prometheus::Opts::new(
                        "circuit_breaker_state",
                        "Circuit breaker of each upstream: 0 closed, 1 open (failing fast), 2 half-open (probing).",
                    ),
                    // Not `instance`: Prometheus gives that name to the scraped target.
                    &["upstream", "target"],
                )
                .expect("valid metric"),
            ),
        }
    }
}

/// What every worker's copy of an upstream shares: where it is, its limits, its metrics, its
/// circuit breaker and its request slots. Requests go through an [`Upstream`] made from it per
/// actix worker.
#[derive(Clone)]
pub(crate) struct UpstreamTarget {
    name: UpstreamName,
    base_url: String,
    limits: UpstreamLimits,
    metrics: UpstreamMetrics,
    breaker: Arc<CircuitBreaker>,
    /// [`UpstreamLimits::max_connections`] permits, shared by the workers; waiters are served
    /// in turn.
    slots: Arc<Semaphore>,
    /// The last `/health` probe's result and when it was taken, shared: a flood of `/ready`
    /// makes one probe at a time, never a connection per caller.
    last_probe: Arc<tokio::sync::Mutex<Option<(Instant, bool)>>>,
}

impl UpstreamTarget {
    pub(crate) fn new(
        name: UpstreamName,
        base_url: String,
        limits: UpstreamLimits,
        metrics: UpstreamMetrics,
    ) -> Self {
        let breaker = CircuitBreaker::new(
            BREAKER_THRESHOLD,
            BREAKER_COOL_DOWN,
            metrics
                .breaker_state
                .with_label_values(&[name.label(), base_url.trim_start_matches("http://")]),
        );
        Self {
            name,
            base_url,
            limits,
            metrics,
            breaker: Arc::new(breaker),
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            last_probe: Arc::default(),
        }
    }

    /// The upstream with connections of its own, for one actix worker. A worker runs its own
    /// single-threaded runtime, and a connection's task lives on the runtime that opened it:
    /// with a pool per worker, no request waits on another worker's thread, and a worker that
    /// stops first at shutdown takes only its own connections with it. A worker never uses more
    /// connections than the slots, and keeps no more idle.
    fn for_this_worker(&self) -> Upstream {
        let UpstreamLimits {
            connect_timeout,
            request_timeout,
            max_connections,
            ..
        } = self.limits;
        Upstream {
            http: http_client(connect_timeout, request_timeout, max_connections),
            fresh_connection_http: http_client(connect_timeout, request_timeout, 0),
            target: self.clone(),
        }
    }
}

/// One actix worker's way to an upstream (see [`UpstreamTarget::for_this_worker`]).
struct Upstream {
    target: UpstreamTarget,
    http: reqwest::Client,
    /// For the one retry: a new connection, since the pooled ones may all be closing.
    fresh_connection_http: reqwest::Client,
}

impl Upstream {
    /// Sends the client's request on (same method, path and query) and returns the
    /// upstream's answer.
    async fn forward(
        &self,
        req: &HttpRequest,
        body: Bytes,
        request_id: &RequestId,
    ) -> Result<UpstreamAnswer, GatewayError> {
        let queue_timeout = self.target.limits.queue_timeout;
        // Taken before the breaker's permit: waiting for a slot says nothing about the upstream.
        let Ok(slot) = tokio::time::timeout(queue_timeout, self.target.slots.acquire()).await
        else {
            return Err(self.failed(UpstreamFailure::Busy(queue_timeout)));
        };
        let _slot = slot.expect("the slots are never closed");
        let Some(permit) = self.target.breaker.permit() else {
            return Err(self.failed(UpstreamFailure::CircuitOpen));
        };
        let timer = self
            .target
            .metrics
            .duration
            .with_label_values(&[self.target.name.label()])
            .start_timer();
        // Boxed: only a request that has its slot pays for the whole call's state, not the
        // many that may be waiting for one.
        let result = Box::pin(self.try_forward(req, body, request_id)).await;
        timer.observe_duration();
        // An upstream that answers, even with an error status, is up.
        self.target.breaker.record(permit, result.is_ok());
        result.map_err(|e| match e {
            GatewayError::Upstream { failure, .. } => self.failed(failure),
            other => other,
        })
    }

    /// `failure` counted in the upstream error metric, as the error it answers.
    fn failed(&self, failure: UpstreamFailure) -> GatewayError {
        self.target
            .metrics
            .errors
            .with_label_values(&[self.target.name.label(), failure.kind()])
            .inc();
        GatewayError::Upstream {
            upstream: self.target.name,
            failure,
        }
    }

    /// Whether the upstream's `/health` answered 200 within `timeout`, at most
    /// [`PROBE_REUSE`] ago.
    async fn is_up(&self, timeout: Duration) -> bool {
        let mut last = self.target.last_probe.lock().await;
        if let Some((at, up)) = *last {
            if at.elapsed() < PROBE_REUSE {
                return up;
            }
        }
        let probe = self
            .http
            .get(format!("{}/health", self.target.base_url))
            .timeout(timeout)
            .send();
        let up = matches!(probe.await, Ok(response) if response.status().is_success());
        *last = Some((Instant::now(), up));
        up
    }

    async fn try_forward(
        &self,
        req: &HttpRequest,
        body: Bytes,
        request_id: &RequestId,
    ) -> Result<UpstreamAnswer, GatewayError> {
        let path_and_query = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
            .expect("actix methods are valid methods");
        let send = |http: &reqwest::Client| {
            let mut upstream = http
                .request(
                    method.clone(),
                    format!("{}{path_and_query}", self.target.base_url),
                )
                .header(REQUEST_ID_HEADER.as_str(), request_id.as_str());
            // Every field line: `If-None-Match: "a"` and `If-None-Match: "b"` are one list.
            for name in FORWARDED_REQUEST_HEADERS {
                for value in req.headers().get_all(name) {
                    upstream = upstream.header(name, value.as_bytes());
                }
            }
            if !body.is_empty() {
                upstream = upstream.body(body.clone());
            }
            upstream.send()
        };
        let fail = |failure| GatewayError::Upstream {
            upstream: self.target.name,
            failure,
        };
        let response = match send(&self.http).await {
            Ok(response) => response,
            Err(e) if worth_one_retry(may_be_repeated(req), &e) => {
                log::debug!(
                    "{}: {}; sending the request once more, on a new connection",
                    self.target.name,
                    error_chain(&e)
                );
                send(&self.fresh_connection_http)
                    .await
                    .map_err(|e| fail(classify(e)))?
            }
            Err(e) => return Err(fail(classify(e))),
        };

        let status =
            StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut headers = Vec::new();
        for name in FORWARDED_RESPONSE_HEADERS {
            for value in response.headers().get_all(name) {
                if let Ok(value) = HeaderValue::from_bytes(value.as_bytes()) {
                    headers.push((HeaderName::from_static(name), value));
                }
            }
        }
        let body = if req.method() == actix_web::http::Method::HEAD {
            let length = response
                .headers()
                .get(reqwest::header::CONTENT_LENGTH)
                .and_then(|value| value.to_str().ok()?.parse().ok());
            AnswerBody::Head(length)
        } else {
            AnswerBody::Full(read_answer(response).await.map_err(fail)?)
        };
        Ok(UpstreamAnswer {
            status,
            headers,
            body,
        })
    }
}

/// An upstream's answer as the gateway passes it on: its status, the headers that matter
/// ([`FORWARDED_RESPONSE_HEADERS`]) and its body.
pub(crate) struct UpstreamAnswer {
    pub(crate) status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) body: AnswerBody,
}

pub(crate) enum AnswerBody {
    Full(Bytes),
    /// The answer to a `HEAD`: the length a `GET` would have had, if the upstream said.
    Head(Option<u64>),
}

impl UpstreamAnswer {
    /// The first value of header `name`, if the answer has it.
    pub(crate) fn header(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.headers
            .iter()
            .find_map(|(header, value)| (header == name).then_some(value))
    }

    /// The answer to the client, with this status (or `status`), the headers and `body`.
    pub(crate) fn respond(&self, status: Option<StatusCode>, body: &AnswerBody) -> HttpResponse {
        let mut answer = HttpResponse::build(status.unwrap_or(self.status));
        for header in &self.headers {
            answer.append_header(header.clone());
        }
        match body {
            AnswerBody::Full(bytes) => answer.body(bytes.clone()),
            AnswerBody::Head(length) => answer.body(HeadAnswer(*length)),
        }
    }

    /// This answer owning exactly its bytes (see `catalogue_cache`): its body copied out of
    /// whatever larger buffer it may be a slice of.
    pub(crate) fn detached(&self) -> Self {
        Self {
            status: self.status,
            headers: self.headers.clone(),
            body: match &self.body {
                AnswerBody::Full(bytes) => AnswerBody::Full(Bytes::copy_from_slice(bytes)),
                AnswerBody::Head(length) => AnswerBody::Head(*length),
            },
        }
    }

    /// About how many bytes it holds: the body and the headers.
    pub(crate) fn size(&self) -> usize {
        let body = match &self.body {
            AnswerBody::Full(bytes) => bytes.len(),
            AnswerBody::Head(_) => 0,
        };
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum();
        body + headers
    }

    pub(crate) fn into_response(self) -> HttpResponse {
        self.respond(None, &self.body)
    }
}

/// The answer to a `HEAD`: no body, but the `Content-Length` a `GET` would have had (RFC 9110,
/// 8.6); actix writes the length and never the body of a `HEAD` answer.
struct HeadAnswer(Option<u64>);

impl actix_web::body::MessageBody for HeadAnswer {
    type Error = std::convert::Infallible;

    fn size(&self) -> actix_web::body::BodySize {
        self.0.map_or(
            actix_web::body::BodySize::None,
            actix_web::body::BodySize::Sized,
        )
    }

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Bytes, Self::Error>>> {
        std::task::Poll::Ready(None)
    }
}

/// The upstream's body, refused beyond [`MAX_ANSWER_BYTES`]. With a Content-Length (inventory
/// always sends one) hyper hands over a body that usually arrived in one piece, without a copy.
async fn read_answer(mut response: reqwest::Response) -> Result<Bytes, UpstreamFailure> {
    let too_large = || UpstreamFailure::TooLarge(MAX_ANSWER_BYTES);
    match response.content_length() {
        Some(length) if length > MAX_ANSWER_BYTES as u64 => Err(too_large()),
        Some(_) => response.bytes().await.map_err(classify),
        None => {
            let mut bytes = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(classify)? {
                if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err(too_large());
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(bytes.into())
        }
    }
}

fn http_client(
    connect_timeout: Duration,
    request_timeout: Duration,
    pool_max_idle_per_host: usize,
) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(request_timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(pool_max_idle_per_host)
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("the HTTP client builds with these settings")
}

/// Whether a failed call is sent once more. A service that restarts closes its idle keep-alive
/// connections, and a request sent on one just then fails without an answer
/// ("connection closed before message completed"). Only requests that may be repeated (see
/// [`may_be_repeated`]) and only failures before any answer; never a timeout, which would
/// double the wait.
fn worth_one_retry(repeatable: bool, e: &reqwest::Error) -> bool {
    repeatable && !e.is_timeout() && (e.is_connect() || e.is_request())
}

/// Requests whose repeat answers the same: RFC 9110 idempotent methods, but not DELETE (its
/// repeat answers 404) nor a conditional PUT (its repeat answers 412 once the first went
/// through).
fn may_be_repeated(req: &HttpRequest) -> bool {
    use actix_web::http::{header, Method};
    match *req.method() {
        Method::GET | Method::HEAD => true,
        Method::PUT => !req.headers().contains_key(header::IF_MATCH),
        _ => false,
    }
}

/// A connection that could not be made, even for lack of time (a machine that is off or drops
/// packets), is unreachable: the request never left, so another instance may take it.
fn classify(e: reqwest::Error) -> UpstreamFailure {
    // A request that could not even be built was not sent either.
    if e.is_connect() || e.is_builder() {
        UpstreamFailure::Unreachable(e)
    } else if e.is_timeout() {
        UpstreamFailure::Timeout(e)
    } else {
        UpstreamFailure::BadAnswer(e)
    }
}
