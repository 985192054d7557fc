//! The one error type of api-gateway, mapped to HTTP in one place.

use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use common::{problem::Problem, request_id, telemetry::error_chain};

use crate::publisher::PublishError;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The request itself is wrong; the problem says how.
    #[error("{0}")]
    BadRequest(Problem),
    #[error("{upstream}: {failure}")]
    Upstream {
        upstream: &'static str,
        #[source]
        failure: UpstreamFailure,
    },
    #[error("order not queued")]
    Publish(#[from] PublishError),
    #[error("the Idempotency-Key's first request is still in progress")]
    IdempotencyKeyInFlight,
    #[error("the Idempotency-Key was used for another payload")]
    IdempotencyKeyReused,
}

/// How a call to a service behind the gateway failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamFailure {
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
}

impl UpstreamFailure {
    /// The `kind` label of the upstream error metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unreachable(_) => "unreachable",
            Self::Timeout(_) => "timeout",
            Self::BadAnswer(_) | Self::TooLarge(_) => "bad_answer",
            Self::CircuitOpen => "circuit_open",
        }
    }
}

/// How problems name a service behind the gateway.
fn service_title(upstream: &str) -> &'static str {
    match upstream {
        "inventory" => "catalogue",
        "billing" => "billing",
        _ => "upstream",
    }
}

impl From<Problem> for GatewayError {
    fn from(problem: Problem) -> Self {
        Self::BadRequest(problem)
    }
}

impl GatewayError {
    fn problem(&self) -> Problem {
        match self {
            Self::BadRequest(problem) => problem.clone(),
            Self::Upstream { upstream, failure } => {
                let service = service_title(upstream);
                match failure {
                    UpstreamFailure::Unreachable(_) => Problem::new(StatusCode::BAD_GATEWAY)
                        .with_detail(format!("The {service} service is unreachable; try again shortly."))
                        .with_retry_after(2),
                    UpstreamFailure::Timeout(_) => Problem::new(StatusCode::GATEWAY_TIMEOUT)
                        .with_detail(format!("The {service} service did not answer in time.")),
                    UpstreamFailure::BadAnswer(_) | UpstreamFailure::TooLarge(_) => {
                        Problem::new(StatusCode::BAD_GATEWAY)
                            .with_detail(format!("The {service} service gave an unusable answer."))
                    }
                    UpstreamFailure::CircuitOpen => Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                        .with_detail(format!(
                            "The {service} service is failing; the gateway is not calling it for a moment. Try again shortly."
                        ))
                        .with_retry_after(2),
                }
            }
            // Never "queued" unless the broker confirmed it: the client may retry safely with
            // the same Idempotency-Key.
            Self::Publish(_) => Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                .with_detail(
                    "The order was not queued: the message broker is unavailable. Retry later, \
                     with the same Idempotency-Key to be safe.",
                )
                .with_retry_after(5),
            Self::IdempotencyKeyInFlight => Problem::new(StatusCode::CONFLICT)
                .with_detail(
                    "A request with this Idempotency-Key is still being processed; retry once it \
                     has been answered.",
                )
                .with_retry_after(1),
            Self::IdempotencyKeyReused => Problem::new(StatusCode::UNPROCESSABLE_ENTITY)
                .with_detail(
                    "This Idempotency-Key was already used for an order with a different payload; \
                     use a new key for a new order.",
                ),
        }
    }
}

impl ResponseError for GatewayError {
    fn status_code(&self) -> StatusCode {
        self.problem().status_code()
    }

    fn error_response(&self) -> HttpResponse {
        let problem = self.problem();
        if problem.status >= 500 {
            let id = request_id::current().unwrap_or_default();
            log::warn!("request_id={id} {}", error_chain(self));
        }
        problem.to_response()
    }
}
