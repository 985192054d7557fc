//! The one error type of billing-app's HTTP side, mapped to HTTP in one place.

use actix_web::http::StatusCode;
use common::problem::Problem;
use database::Failure;
use uuid::Uuid;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum BillingError {
    #[error("order {0} is not billed (yet)")]
    NotFound(Uuid),
    #[error("{0}")]
    BadRequest(Problem),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<deadpool_postgres::PoolError> for BillingError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Store(e.into())
    }
}

impl From<tokio_postgres::Error> for BillingError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Store(e.into())
    }
}

impl BillingError {
    fn problem(&self) -> Problem {
        match self {
            Self::NotFound(id) => Problem::new(StatusCode::NOT_FOUND).with_detail(format!(
                "Order {id} is not billed: it is still queued, or it does not exist."
            )),
            Self::BadRequest(problem) => problem.clone(),
            // Reading an order breaks no constraint: anything but unavailability is a fault.
            Self::Store(e) => match e.failure() {
                Failure::Unavailable => Problem::database_unavailable("billing"),
                Failure::Constraint | Failure::InvalidData | Failure::Fault => Problem::internal(),
            },
        }
    }
}

common::answer_errors_as_problems!(BillingError);
