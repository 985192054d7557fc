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
    /// `If-Match` named a version the movie no longer has (or `If-None-Match` the one it has).
    #[error("movie {0} is not as the client's preconditions require")]
    Changed(MovieId),
    /// Preconditions on the catalogue as a whole, which has no entity tag.
    #[error("preconditions on the whole catalogue")]
    CatalogueUntagged,
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
                    "Movie {id} is not as If-Match / If-None-Match require (it changed since the version you have?); GET it again for its current ETag."
                ))
            }
            Self::CatalogueUntagged => {
                return Problem::new(StatusCode::PRECONDITION_FAILED).with_detail(
                    "The catalogue as a whole has no entity tag: only If-Match: * can match it.",
                )
            }
            Self::BadRequest(problem) => return problem.clone(),
            Self::Pool(_) => Failure::of(None),
            Self::Database(e) => Failure::of(Some(e)),
        };
        match database_failure {
            Failure::Unavailable => Problem::database_unavailable("catalogue"),
            Failure::Constraint => Problem::new(StatusCode::CONFLICT)
                .with_detail("The change conflicts with the stored data."),
            // Requests are validated before they reach the database: values it cannot store
            // are a fault of ours.
            Failure::InvalidData | Failure::Fault => Problem::internal(),
        }
    }
}

common::answer_errors_as_problems!(InventoryError);
