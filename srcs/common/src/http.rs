//! The HTTP conventions shared by the services: the app every service starts from (body limits,
//! extractor errors and every bare error response as problem+json, request logging), and the
//! server around it: its socket (`listen`), its deadlines (`start`) and a stop that cuts no
//! client off (`serve_until`).

use std::{
    net::{SocketAddr, TcpListener},
    time::Duration,
};

use actix_http::Request;
use actix_service::IntoServiceFactory;
use actix_web::{
    body::MessageBody,
    dev::{AppConfig, Response, Server, Service, ServiceFactory, ServiceRequest, ServiceResponse},
    error::{InternalError, JsonPayloadError, PathError, QueryPayloadError},
    http::{header, Method, StatusCode},
    middleware::{from_fn, Condition, ErrorHandlerResponse, ErrorHandlers, Logger},
    web, App, HttpRequest, HttpResponse, HttpServer, Route,
};

use crate::problem::{Problem, PROBLEM_JSON};

/// The application every service starts from: one request log line, metrics, the request id,
/// problem+json for every error, limits on the request's head, body size and body time, and a
/// 404 problem for unknown routes. Services add their state and routes.
pub fn app() -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .wrap(from_fn(crate::request_limits::middleware))
        .wrap(problem_error_handlers())
        .wrap(from_fn(crate::request_id::middleware))
        .wrap(from_fn(crate::metrics::middleware))
        .wrap(Condition::new(request_log_enabled(), request_logger()))
        .app_data(json_config())
        .app_data(payload_config())
        .app_data(query_config())
        .app_data(path_config())
        .default_service(web::to(not_found))
}

/// After a stop signal, how long connections accepted just before it get to send their request
/// before the server drains (and closes every connection without a request in progress).
pub(crate) const ACCEPTED_CONNECTION_GRACE: Duration = Duration::from_millis(300);

/// A service's HTTP server, started (see [`start`]) and run with [`HttpService::serve_until`].
pub struct HttpService {
    server: Server,
    addr: SocketAddr,
}

impl HttpService {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` completes, then stops without cutting a client off (see
    /// [`stop_without_cutting_off`]).
    pub async fn serve_until(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        let handle = self.server.handle();
        // The server runs only while polled, and must keep running while it is being stopped.
        let mut running = tokio::spawn(self.server);
        let joined = |joined: Result<std::io::Result<()>, tokio::task::JoinError>| {
            joined.unwrap_or_else(|e| Err(std::io::Error::other(e)))
        };
        tokio::select! {
            finished = &mut running => return joined(finished),
            () = shutdown => {}
        }
        stop_without_cutting_off(&handle).await;
        joined(running.await)
    }
}

/// Stops a server without cutting a client off: first it stops accepting (new connections wait
/// in the listening socket's backlog, for the next process when systemd keeps the socket), then
/// it gives the connections it just accepted [`ACCEPTED_CONNECTION_GRACE`] to send their
/// request, then it finishes every request in progress and closes.
async fn stop_without_cutting_off(handle: &actix_web::dev::ServerHandle) {
    handle.pause().await;
    tokio::time::sleep(ACCEPTED_CONNECTION_GRACE).await;
    handle.stop(true).await;
}

/// How long a client may take to send a request's head: slow or stalled clients are dropped.
pub(crate) const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a service could not take its listening socket.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    addr: SocketAddr,
    source: std::io::Error,
}

/// The service's listening socket: the one systemd kept from an earlier start, else a new one
/// on `addr` (see `systemd::socket_handover`). `setting` names the variable that configures
/// `addr`.
pub fn listen(addr: SocketAddr, setting: &str) -> Result<TcpListener, BindError> {
    crate::systemd::socket_handover::listen(addr, setting)
        .map_err(|source| BindError { addr, source })
}

/// Starts `server` on `listener` with what every
/// service's server shares: the deadlines on reading a request and on idle connections (see
/// `request_limits` and `connection_watch` for the rest), no signal handling of its own (the
/// lifecycle stops it, see [`HttpService::serve_until`]), and `shutdown_timeout` for the
/// requests in progress at a stop.
pub fn start<F, I, S, B>(
    server: HttpServer<F, I, S, B>,
    listener: TcpListener,
    shutdown_timeout: Duration,
) -> Result<HttpService, BindError>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let addr = listener.local_addr().map_err(|source| BindError {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    let server = server
        .client_request_timeout(CLIENT_REQUEST_TIMEOUT)
        .keep_alive(KEEP_ALIVE)
        .on_connect(crate::connection_watch::on_connect)
        .disable_signals()
        .shutdown_timeout(shutdown_timeout.as_secs().max(1))
        .listen(listener)
        .map_err(|source| BindError { addr, source })?;
    Ok(HttpService {
        server: server.run(),
        addr,
    })
}

/// How long an idle keep-alive connection stays open.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// Largest request body any service accepts: a movie with a 5,000-character description fits many times.
pub(crate) const BODY_LIMIT_BYTES: usize = 64 * 1024;

/// JSON extractor configuration: size limit, content type, and parse errors as problem+json.
pub(crate) fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(BODY_LIMIT_BYTES)
        .error_handler(|err, _req| {
            let problem = json_problem(&err);
            InternalError::from_response(err, problem.to_response()).into()
        })
}

fn json_problem(err: &JsonPayloadError) -> Problem {
    match err {
        JsonPayloadError::ContentType => Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE)
            .with_detail("The body must be JSON, sent with `Content-Type: application/json`."),
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            body_too_large()
        }
        JsonPayloadError::Deserialize(e) => {
            Problem::new(StatusCode::BAD_REQUEST).with_detail(format!("Malformed JSON: {e}."))
        }
        other => {
            Problem::new(StatusCode::BAD_REQUEST).with_detail(format!("Unreadable body: {other}."))
        }
    }
}

pub(crate) fn body_too_large() -> Problem {
    Problem::new(StatusCode::PAYLOAD_TOO_LARGE).with_detail(format!(
        "The body is larger than the limit of {BODY_LIMIT_BYTES} bytes."
    ))
}

/// Raw-body extractor configuration with the same limit.
pub(crate) fn payload_config() -> web::PayloadConfig {
    web::PayloadConfig::new(BODY_LIMIT_BYTES)
}

pub(crate) fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err: QueryPayloadError, _req| {
        let problem = Problem::new(StatusCode::BAD_REQUEST)
            .with_detail(format!("Invalid query string: {err}."));
        InternalError::from_response(err, problem.to_response()).into()
    })
}

pub(crate) fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err: PathError, _req| {
        let problem =
            Problem::new(StatusCode::BAD_REQUEST).with_detail(format!("Invalid path: {err}."));
        InternalError::from_response(err, problem.to_response()).into()
    })
}

/// Default service: unknown routes get a 404 problem.
pub(crate) async fn not_found(req: HttpRequest) -> HttpResponse {
    Problem::new(StatusCode::NOT_FOUND)
        .with_detail(format!("No route for {} {}.", req.method(), req.path()))
        .to_response()
}

/// A resource's default service: 405 naming the methods it does serve, in `Allow`.
pub(crate) fn method_not_allowed(allowed: &[Method]) -> Route {
    let allow = allowed
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    web::to(move |req: HttpRequest| {
        let allow = allow.clone();
        async move {
            let mut response = Problem::new(StatusCode::METHOD_NOT_ALLOWED)
                .with_detail(format!(
                    "{} is not allowed on {}; use {allow}.",
                    req.method(),
                    req.path()
                ))
                .to_response();
            let value =
                header::HeaderValue::from_str(&allow).expect("method names are header-safe");
            response.headers_mut().insert(header::ALLOW, value);
            response
        }
    })
}

/// Turns every error response that is not JSON (actix's own 413, 400 from extractors without a
/// handler, ...) into a problem, so clients see one error shape only.
pub(crate) fn problem_error_handlers<B: MessageBody + 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().default_handler(|res: ServiceResponse<B>| {
        // JSON bodies were written on purpose (problems, readiness reports); only actix's own
        // bare or plain-text error bodies are replaced.
        let is_json = res.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
            let v = v.as_bytes();
            v.starts_with(PROBLEM_JSON.as_bytes()) || v.starts_with(b"application/json")
        });
        if is_json {
            return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
        }
        let status = res.status();
        let mut problem = Problem::new(status);
        match status {
            StatusCode::METHOD_NOT_ALLOWED => {
                problem = problem.with_detail(format!(
                    "{} is not allowed on {}.",
                    res.request().method(),
                    res.request().path()
                ));
            }
            StatusCode::PAYLOAD_TOO_LARGE => problem = body_too_large(),
            _ => {}
        }
        let (req, _) = res.into_parts();
        let res = ServiceResponse::new(req, problem.to_response()).map_into_right_body();
        Ok(ErrorHandlerResponse::Response(res))
    })
}

/// Whether request lines would be kept (RUST_LOG at info or finer for actix's logger). The
/// logger renders its fields for every request even when the line is then dropped, so it is
/// left out when they would be.
fn request_log_enabled() -> bool {
    log::log_enabled!(target: "actix_web::middleware::logger", log::Level::Info)
}

/// One line per request: request id, method, path, status, latency, size, peer.
pub(crate) fn request_logger() -> Logger {
    Logger::new(r#"request_id=%{x-request-id}o method=%{method}xi path="%U" status=%s latency_ms=%D bytes=%b peer=%a"#)
        .custom_request_replace("method", |req| req.method().to_string())
}
