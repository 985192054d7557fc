//! One request id per client request: taken from `X-Request-Id` when it is sane, generated
//! otherwise, answered in the response, and visible to everything that runs for the request
//! (error bodies, log lines, outgoing calls) through a task-local.

use std::future::{ready, Ready};

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::header::{HeaderName, HeaderValue},
    middleware::Next,
    FromRequest, HttpMessage, HttpRequest,
};

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
const MAX_LEN: usize = 128;

tokio::task_local! {
    static CURRENT: RequestId;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    pub(crate) fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    /// Accepts a client's id only if it is short and made of characters safe in headers and logs.
    pub fn parse(candidate: &str) -> Option<Self> {
        let sane = !candidate.is_empty()
            && candidate.len() <= MAX_LEN
            && candidate
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        sane.then(|| Self(candidate.to_owned()))
    }

    pub(crate) fn from_header(value: Option<&HeaderValue>) -> Self {
        value
            .and_then(|v| v.to_str().ok())
            .and_then(Self::parse)
            .unwrap_or_else(Self::generate)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Runs `future` with this id as the current one.
    pub(crate) async fn scope<F: std::future::Future>(self, future: F) -> F::Output {
        CURRENT.scope(self, future).await
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of the request being served, if any.
pub(crate) fn current() -> Option<String> {
    CURRENT.try_with(|id| id.0.clone()).ok()
}

/// actix-web middleware (use with `middleware::from_fn`).
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = RequestId::from_header(req.headers().get(REQUEST_ID_HEADER));
    req.extensions_mut().insert(id.clone());
    let header_value = HeaderValue::from_str(id.as_str()).expect("request ids are header-safe");
    let mut response = id.scope(next.call(req)).await?;
    response
        .headers_mut()
        .insert(REQUEST_ID_HEADER, header_value);
    Ok(response)
}

impl FromRequest for RequestId {
    type Error = std::convert::Infallible;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let id = req
            .extensions()
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(RequestId::generate);
        ready(Ok(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_ids() {
        assert!(RequestId::parse("abc-123_x.y:z").is_some());
        assert!(RequestId::parse(&"a".repeat(128)).is_some());
    }

    #[test]
    fn refuses_ids_that_could_forge_log_lines_or_headers() {
        for bad in ["", "a b", "x\ny", "id\"", "é", &"a".repeat(129)] {
            assert!(RequestId::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn generates_an_id_when_the_header_is_unusable() {
        let generated = RequestId::from_header(Some(&HeaderValue::from_static("has space")));
        assert_eq!(generated.as_str().len(), 36);
    }
}
