//! The one error type of inventory-app, mapped to HTTP in one place.

use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use common::{db, problem::Problem};
use deadpool_postgres::PoolError;

use crate::domain::MovieId;

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("no movie with id {0}")]
    NotFound(MovieId),
    /// The request itself is wrong; the problem says how.
    #[error("{0}")]
    BadRequest(Problem),
    #[error("database pool: {0}")]
    Pool(#[from] PoolError),
    #[error("database: {0}")]
    Database(#[from] tokio_postgres::Error),
}

impl From<Problem> for InventoryError {
    fn from(problem: Problem) -> Self {
        Self::BadRequest(problem)
    }
}

impl InventoryError {
    fn problem(&self) -> Problem {
        match self {
            Self::NotFound(id) => {
                Problem::new(StatusCode::NOT_FOUND).with_detail(format!("No movie with id {id}."))
            }
            Self::BadRequest(problem) => problem.clone(),
            Self::Pool(_) => db::failure_problem(None, "catalogue"),
            Self::Database(e) => db::failure_problem(Some(e), "catalogue"),
        }
    }
}

impl ResponseError for InventoryError {
    fn status_code(&self) -> StatusCode {
        self.problem().status_code()
    }

    fn error_response(&self) -> HttpResponse {
        let problem = self.problem();
        db::log_failure(problem.status, self);
        problem.to_response()
    }
}
