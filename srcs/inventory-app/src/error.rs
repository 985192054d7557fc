//! The one error type of inventory-app, mapped to HTTP in one place.

use actix_web::http::StatusCode;
use common::problem::Problem;
use database::Failure;
use deadpool_postgres::PoolError;

use crate::domain::MovieId;

#[derive(Debug, thiserror::Error)]
pub(crate) enum InventoryError {
    #[error("no movie with id {0}")]
    NotFound(MovieId),
    /// `If-Match` named a version the movie no longer has.
    #[error("movie {0} changed since the version the client has")]
    Changed(MovieId),
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
        let database_failure = match self {
            Self::NotFound(id) => {
                return Problem::new(StatusCode::NOT_FOUND)
                    .with_detail(format!("No movie with id {id}."))
            }
            Self::Changed(id) => {
                return Problem::new(StatusCode::PRECONDITION_FAILED).with_detail(format!(
                    "Movie {id} has changed since the version in If-Match; GET it again for its current ETag."
                ))
            }
            Self::BadRequest(problem) => return problem.clone(),
            Self::Pool(_) => Failure::of(None),
            Self::Database(e) => Failure::of(Some(e)),
        };
        match database_failure {
            Failure::Unavailable => Problem::database_unavailable("catalogue"),
            Failure::Constraint => Problem::new(StatusCode::CONFLICT)
                .with_detail("The change conflicts with the stored data."),
            Failure::Fault => Problem::internal(),
        }
    }
}

common::answer_errors_as_problems!(InventoryError);
