//! The one error type of inventory-app, mapped to HTTP in one place.

use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use common::{db, problem::Problem, request_id, telemetry::error_chain};
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
            // No usable connection in time: unreachable, refusing connections, or saturated.
            Self::Pool(_) => unavailable(),
            Self::Database(e) if db::is_transient(e) => unavailable(),
            Self::Database(e) if e.code().is_some_and(|c| c.code().starts_with("23")) => {
                // Integrity constraint: the edge validation should have caught it; say so plainly.
                Problem::new(StatusCode::CONFLICT)
                    .with_detail("The change conflicts with the stored catalogue.")
            }
            Self::Database(_) => Problem::new(StatusCode::INTERNAL_SERVER_ERROR)
                .with_detail("An unexpected error occurred; it has been logged."),
        }
    }
}

fn unavailable() -> Problem {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE)
        .with_detail("The catalogue database is unavailable; try again shortly.")
        .with_retry_after(2)
}

impl ResponseError for InventoryError {
    fn status_code(&self) -> StatusCode {
        self.problem().status_code()
    }

    fn error_response(&self) -> HttpResponse {
        let problem = self.problem();
        let id = request_id::current().unwrap_or_default();
        match problem.status {
            500 => log::error!("request_id={id} internal error: {}", error_chain(self)),
            503 | 409 => log::warn!("request_id={id} {}", error_chain(self)),
            _ => {}
        }
        problem.to_response()
    }
}
