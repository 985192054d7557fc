//! The one error type of api-gateway, mapped to HTTP in one place.

use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use common::{problem::Problem, request_id, telemetry::error_chain};

use crate::publisher::PublishError;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The request itself is wrong; the problem says how.
    #[error("{0}")]
    BadRequest(Problem),
    #[error("inventory unreachable")]
    InventoryUnreachable(#[source] reqwest::Error),
    #[error("inventory timed out")]
    InventoryTimeout(#[source] reqwest::Error),
    #[error("inventory answered badly")]
    InventoryBadAnswer(#[source] reqwest::Error),
    #[error("inventory's answer is larger than {0} bytes")]
    InventoryAnswerTooLarge(usize),
    #[error("order not queued")]
    Publish(#[from] PublishError),
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
            Self::InventoryUnreachable(_) => Problem::new(StatusCode::BAD_GATEWAY)
                .with_detail("The catalogue service is unreachable; try again shortly.")
                .with_retry_after(2),
            Self::InventoryTimeout(_) => Problem::new(StatusCode::GATEWAY_TIMEOUT)
                .with_detail("The catalogue service did not answer in time."),
            Self::InventoryBadAnswer(_) | Self::InventoryAnswerTooLarge(_) => {
                Problem::new(StatusCode::BAD_GATEWAY)
                    .with_detail("The catalogue service gave an unusable answer.")
            }
            // Never "queued" unless the broker confirmed it: the client may retry safely with
            // the same Idempotency-Key.
            Self::Publish(_) => Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                .with_detail(
                    "The order was not queued: the message broker is unavailable. Retry later, \
                     with the same Idempotency-Key to be safe.",
                )
                .with_retry_after(5),
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
