//! The one error type of api-gateway, mapped to HTTP in one place.

use actix_web::http::StatusCode;
use common::problem::Problem;

use crate::{
    publisher::PublishError,
    upstream::{UpstreamFailure, UpstreamName},
};

#[derive(Debug, thiserror::Error)]
pub(crate) enum GatewayError {
    /// The request itself is wrong; the problem says how.
    #[error("{0}")]
    BadRequest(Problem),
    #[error("{upstream}: {failure}")]
    Upstream {
        upstream: UpstreamName,
        #[source]
        failure: UpstreamFailure,
    },
    #[error("order not queued")]
    Publish(#[from] PublishError),
    #[error("the Idempotency-Key's first request is still in progress")]
    IdempotencyKeyInFlight,
    #[error("the Idempotency-Key was used for another payload")]
    IdempotencyKeyReused,
    /// The client closed its connection while the request waited on another service.
    #[error("the client closed its connection")]
    ClientGone,
    /// Inventory failed the same catalogue read asked for this one and others at once.
    #[error("inventory failed the same read asked at once")]
    SameReadFailed,
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
                let service = upstream.title();
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
                    UpstreamFailure::Busy(_) => Problem::unavailable(
                        format!(
                            "The {service} service is busy with other requests; try again shortly."
                        ),
                        1,
                    ),
                    UpstreamFailure::CircuitOpen => Problem::unavailable(
                        format!(
                            "The {service} service is failing; the gateway is not calling it for a moment. Try again shortly."
                        ),
                        2,
                    ),
                }
            }
            // Never "queued" unless the broker confirmed it: the client may retry safely with
            // the same Idempotency-Key.
            Self::Publish(_) => Problem::unavailable(
                "The order was not queued: the message broker is unavailable. Retry later, \
                 with the same Idempotency-Key to be safe.",
                5,
            ),
            Self::IdempotencyKeyInFlight => Problem::new(StatusCode::CONFLICT)
                .with_detail(
                    "A request with this Idempotency-Key is still being processed; retry once it \
                     has been answered.",
                )
                .with_retry_after(1),
            // Nobody reads this answer: the status (nginx's "client closed request") is for the
            // access log.
            Self::ClientGone => {
                Problem::new(StatusCode::from_u16(499).expect("499 is a valid status code"))
                    .with_detail("The client closed its connection before the answer.")
            }
            Self::SameReadFailed => Problem::unavailable(
                "The catalogue service failed the same read, asked for you and others at once; \
                 try again shortly.",
                1,
            ),
            Self::IdempotencyKeyReused => Problem::new(StatusCode::UNPROCESSABLE_ENTITY)
                .with_detail(
                    "This Idempotency-Key was already used for an order with a different payload; \
                     use a new key for a new order.",
                ),
        }
    }
}

common::answer_errors_as_problems!(GatewayError);
