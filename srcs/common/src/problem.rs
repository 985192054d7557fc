//! RFC 9457 problem details: the one error shape every service answers with.

use actix_web::{
    http::{header, StatusCode},
    HttpResponse, ResponseError,
};
use serde::{Deserialize, Serialize};

use crate::request_id;

pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// Problem type of a request refused for invalid fields; `errors` names each field.
pub(crate) const VALIDATION_ERROR: &str = "/problems/validation-error";

/// One field that failed validation, with a message meant for the API client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Sent as the `Retry-After` header, not in the body.
    #[serde(skip)]
    pub retry_after_secs: Option<u64>,
}

impl Problem {
    /// A problem whose status says it all (`about:blank`), tagged with the current request id.
    pub fn new(status: StatusCode) -> Self {
        Self {
            problem_type: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: None,
            request_id: request_id::current(),
            errors: Vec::new(),
            retry_after_secs: None,
        }
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let mut problem = Self::new(StatusCode::BAD_REQUEST)
            .with_detail("The request has invalid fields; see `errors`.");
        problem.problem_type = VALIDATION_ERROR.to_owned();
        problem.title = "Invalid request".to_owned();
        problem.errors = errors;
        problem
    }

    /// 503 with `Retry-After`: a dependency is down; the client may retry shortly.
    pub fn unavailable(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE)
            .with_detail(detail)
            .with_retry_after(retry_after_secs)
    }

    /// 503 for a database that cannot be reached or refuses work for now.
    pub fn database_unavailable(which: &str) -> Self {
        Self::unavailable(
            format!("The {which} database is unavailable; try again shortly."),
            2,
        )
    }

    /// 500 without the internals (they are logged).
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR)
            .with_detail("An unexpected error occurred; it has been logged.")
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_secs = Some(seconds);
        self
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn to_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.content_type(PROBLEM_JSON);
        // An error is about this request, now: no cache should answer it again.
        response.insert_header((header::CACHE_CONTROL, "no-store"));
        if let Some(seconds) = self.retry_after_secs {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        response.json(self)
    }
}

/// Logs a request the service could not serve, in full (the client got a problem without the
/// internals): its own faults (500) as errors, a dependency's (502, 503, 504) as warnings. A
/// client's mistake (4xx) is the request log line's business only.
pub fn log_refusal(status: u16, err: &(dyn std::error::Error + 'static)) {
    let id = request_id::current().unwrap_or_default();
    let chain = crate::telemetry::error_chain(err);
    match status {
        500 => log::error!("request_id={id} internal error: {chain}"),
        501.. => log::warn!("request_id={id} {chain}"),
        _ => {}
    }
}

/// Implements `ResponseError` for a service's one error type from its `fn problem(&self) ->
/// Problem`: the mapping to HTTP stays in one `match`, and every service logs and answers alike.
#[macro_export]
macro_rules! answer_errors_as_problems {
    ($error:ty) => {
        impl actix_web::ResponseError for $error {
            fn status_code(&self) -> actix_web::http::StatusCode {
                self.problem().status_code()
            }

            fn error_response(&self) -> actix_web::HttpResponse {
                let problem = self.problem();
                $crate::problem::log_refusal(problem.status, self);
                problem.to_response()
            }
        }
    };
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.title)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        Problem::status_code(self)
    }

    fn error_response(&self) -> HttpResponse {
        self.to_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_the_rfc_9457_members() {
        let problem = Problem::validation(vec![FieldError::new("title", "must not be empty")]);
        let json = serde_json::to_value(&problem).unwrap();
        assert_eq!(json["type"], VALIDATION_ERROR);
        assert_eq!(json["status"], 400);
        assert_eq!(json["errors"][0]["field"], "title");
        assert!(json.get("retry_after_secs").is_none());
    }

    #[test]
    fn plain_problem_omits_empty_members() {
        let json = serde_json::to_value(Problem::new(StatusCode::NOT_FOUND)).unwrap();
        assert_eq!(json["type"], "about:blank");
        assert_eq!(json["title"], "Not Found");
        assert!(json.get("errors").is_none());
        assert!(json.get("detail").is_none());
    }
}
