//! The one error type of billing-app's HTTP side, mapped to HTTP in one place.

use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use common::{db, problem::Problem};
use deadpool_postgres::PoolError;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error("order {0} is not billed (yet)")]
    NotFound(Uuid),
    #[error("{0}")]
    BadRequest(Problem),
    #[error("database pool")]
    Pool(#[from] PoolError),
    #[error("database")]
    Database(#[from] tokio_postgres::Error),
}

impl BillingError {
    fn problem(&self) -> Problem {
        match self {
            Self::NotFound(id) => Problem::new(StatusCode::NOT_FOUND).with_detail(format!(
                "Order {id} is not billed: it is still queued, or it does not exist."
            )),
            Self::BadRequest(problem) => problem.clone(),
            Self::Pool(_) => db::failure_problem(None, "billing"),
            Self::Database(e) => db::failure_problem(Some(e), "billing"),
        }
    }
}

impl ResponseError for BillingError {
    fn status_code(&self) -> StatusCode {
        self.problem().status_code()
    }

    fn error_response(&self) -> HttpResponse {
        let problem = self.problem();
        db::log_failure(problem.status, self);
        problem.to_response()
    }
}
