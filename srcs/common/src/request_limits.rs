//! What a client may make a service hold: how large a request's head may be, and how long its
//! body may take to arrive. Together with actix-http's own deadlines (the head within
//! [`CLIENT_REQUEST_TIMEOUT`](crate::http::CLIENT_REQUEST_TIMEOUT), idle keep-alive connections
//! closed after [`KEEP_ALIVE`](crate::http::KEEP_ALIVE)), every stage of reading a request has
//! a bound, so a client that stalls cannot hold a connection open.

use std::{
    cell::Cell,
    future::Future,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
    time::Duration,
};

use actix_web::{
    body::{EitherBody, MessageBody},
    dev::{Payload, ServiceRequest, ServiceResponse},
    error::PayloadError,
    http::{header, ConnectionType, StatusCode},
    middleware::Next,
    web::Bytes,
    HttpMessage, HttpRequest,
};
use futures_util::Stream;

use crate::problem::Problem;

/// The longest request target (path and query) accepted, as nginx's default buffer for a line.
pub(crate) const MAX_TARGET_BYTES: usize = 8 * 1024;
/// The longest header line accepted (`name: value`), as nginx's default.
pub(crate) const MAX_HEADER_LINE_BYTES: usize = 8 * 1024;
/// The largest request head accepted (request line and every header line), as nginx's default.
/// Heads beyond 128 KiB (or with more than 96 headers) never reach the application: actix-http
/// refuses them itself, with a bare 431.
pub(crate) const MAX_HEAD_BYTES: usize = 32 * 1024;
/// How long a request's body may take to arrive, counted from the end of its head. A 64 KiB body
/// takes a fraction of a second even on a slow mobile link.
pub(crate) const BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// actix-web middleware (the shared app wraps every service in it): refuses oversized heads
/// (`414`, `431`), answers `408` to a body that does not arrive within [`BODY_TIMEOUT`], and
/// closes the connection after any answer given before the request's body was read to its end,
/// since the rest of that body would otherwise hold the connection.
pub async fn middleware(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if let Some(problem) = oversized_head(req.request()) {
        let mut response = problem.to_response();
        response
            .head_mut()
            .set_connection_type(ConnectionType::Close);
        return Ok(req.into_response(response).map_into_right_body());
    }
    // Inside the application until the answer is ready (see `connection_watch`).
    let inside = req
        .conn_data::<crate::connection_watch::Activity>()
        .cloned()
        .map(crate::connection_watch::Activity::enter);
    // An answer before the body's end closes the connection; actix-http would first wait for
    // the rest of a chunked body, so the connection watch makes sure it does not wait long.
    let close_soon = || {
        if let Some(inside) = &inside {
            inside.close_soon();
        }
    };
    let body = has_body(req.request()).then(|| {
        let state = Rc::new(Cell::new(BodyState::Arriving));
        let payload = DeadlineBody {
            inner: req.take_payload(),
            deadline: Box::pin(tokio::time::sleep(BODY_TIMEOUT)),
            state: state.clone(),
        };
        let payload: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = Box::pin(payload);
        req.set_payload(Payload::from(payload));
        state
    });
    let mut response = next.call(req).await?;
    match body.map(|state| state.get()) {
        Some(BodyState::TimedOut) => {
            let mut timeout = Problem::new(StatusCode::REQUEST_TIMEOUT)
                .with_detail(format!(
                    "The request body did not arrive within {} seconds.",
                    BODY_TIMEOUT.as_secs()
                ))
                .to_response();
            timeout
                .head_mut()
                .set_connection_type(ConnectionType::Close);
            close_soon();
            let (req, _) = response.into_parts();
            Ok(ServiceResponse::new(req, timeout).map_into_right_body())
        }
        Some(BodyState::Arriving) => {
            close_soon();
            response
                .response_mut()
                .head_mut()
                .set_connection_type(ConnectionType::Close);
            Ok(response.map_into_left_body())
        }
        Some(BodyState::Complete) | None => Ok(response.map_into_left_body()),
    }
}

/// The problem for a request whose head is larger than a real client needs, if it is.
fn oversized_head(req: &HttpRequest) -> Option<Problem> {
    let target = req
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    if target > MAX_TARGET_BYTES {
        return Some(Problem::new(StatusCode::URI_TOO_LONG).with_detail(format!(
            "The request target is longer than {MAX_TARGET_BYTES} bytes."
        )));
    }
    // "METHOD target HTTP/1.1\r\n", then "name: value\r\n" per header.
    let mut head = req.method().as_str().len() + target + 11;
    for (name, value) in req.headers() {
        let line = name.as_str().len() + 2 + value.len();
        if line > MAX_HEADER_LINE_BYTES {
            return Some(
                Problem::new(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE).with_detail(format!(
                    "The header {name} is longer than {MAX_HEADER_LINE_BYTES} bytes."
                )),
            );
        }
        head += line + 2;
    }
    (head > MAX_HEAD_BYTES).then(|| {
        Problem::new(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE).with_detail(format!(
            "The request's headers are larger than {MAX_HEAD_BYTES} bytes in all."
        ))
    })
}

/// Whether the request announces a body (a non-zero `Content-Length`, or chunked).
fn has_body(req: &HttpRequest) -> bool {
    let headers = req.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyState {
    /// Not read to its end (yet).
    Arriving,
    Complete,
    TimedOut,
}

/// The request's body, failing once [`BODY_TIMEOUT`] has passed before its end.
struct DeadlineBody {
    inner: Payload,
    deadline: Pin<Box<tokio::time::Sleep>>,
    state: Rc<Cell<BodyState>>,
}

impl Stream for DeadlineBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.state.get() {
            BodyState::Complete => return Poll::Ready(None),
            BodyState::TimedOut => return Poll::Ready(Some(Err(timed_out()))),
            BodyState::Arriving => {}
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(None) => {
                this.state.set(BodyState::Complete);
                Poll::Ready(None)
            }
            Poll::Ready(Some(chunk)) => Poll::Ready(Some(chunk)),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.state.set(BodyState::TimedOut);
                    Poll::Ready(Some(Err(timed_out())))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

fn timed_out() -> PayloadError {
    PayloadError::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "the request body did not arrive in time",
    ))
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn heads_within_the_limits_pass_and_larger_ones_are_named() {
        let fine = TestRequest::get()
            .uri("/api/movies?q=matrix")
            .insert_header(("user-agent", "x".repeat(4000)))
            .to_http_request();
        assert!(oversized_head(&fine).is_none());

        let long_line = TestRequest::get()
            .insert_header(("x-big", "x".repeat(MAX_HEADER_LINE_BYTES)))
            .to_http_request();
        let problem = oversized_head(&long_line).unwrap();
        assert_eq!(problem.status, 431);
        assert!(problem.detail.unwrap().contains("x-big"));

        let mut many = TestRequest::get();
        for i in 0..8 {
            many = many.insert_header((format!("x-h{i}"), "y".repeat(5000)));
        }
        assert_eq!(oversized_head(&many.to_http_request()).unwrap().status, 431);

        let long_target = TestRequest::get()
            .uri(&format!("/api/movies?q={}", "a".repeat(MAX_TARGET_BYTES)))
            .to_http_request();
        assert_eq!(oversized_head(&long_target).unwrap().status, 414);
    }
}
