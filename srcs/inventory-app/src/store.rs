//! The SQL: migrations, and one function per catalogue operation.
//!
//! Every write records its change event in the outbox (`catalogue_outbox`) in its own
//! transaction: the event exists exactly when the change does, and `relay` publishes it.
//!
//! Statements are prepared once per connection (`prepare_cached`): parsing and planning each
//! query again was most of PostgreSQL's work on the hot list endpoint.

use actix_web::http::header::EntityTag;
use common::{
    catalogue_event::{CatalogueChange, CatalogueEvent},
    conditional::Preconditions,
};
use deadpool_postgres::GenericClient;
use tokio_postgres::{types::ToSql, Row};

use crate::domain::{Movie, MovieDraft, MovieId, MovieListQuery};

// Migrations from migrations/, serialised between instances by this (arbitrary) lock id.
database::embedded_schema!(0x1A7E_0001);

const COLUMNS: &str = "id, title, description, release_year, genres, runtime_minutes, created_at, \
     updated_at, version, etag";

fn movie_from_row(row: &Row) -> Movie {
    Movie {
        id: row.get("id"),
        title: row.get("title"),
        description: row.get("description"),
        release_year: row.get("release_year"),
        genres: row.get("genres"),
        runtime_minutes: row.get("runtime_minutes"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
        version: row.get("version"),
        etag: row.get("etag"),
    }
}

/// What a write that may carry preconditions (`If-Match`, `If-None-Match`) came to.
#[derive(Debug)]
pub(crate) enum Written<T> {
    Done(T),
    /// There is no such movie.
    Missing,
    /// The movie exists, but not as the preconditions require.
    PreconditionFailed,
}

/// In `tx`: whether the movie exists and meets `preconditions`, its row locked until the
/// transaction ends (so a concurrent writer with the same `If-Match` waits, then fails).
async fn check(
    tx: &deadpool_postgres::Transaction<'_>,
    id: MovieId,
    preconditions: &Preconditions,
) -> Result<Option<Written<()>>, tokio_postgres::Error> {
    if preconditions.is_unconditional() {
        return Ok(None);
    }
    let statement = tx
        .prepare_cached("SELECT etag FROM movies WHERE id = $1 FOR UPDATE")
        .await?;
    // RFC 9110, 13.2.1: preconditions are ignored where the answer without them would be an
    // error (404 for a movie that does not exist).
    Ok(match tx.query_opt(&statement, &[&id.get()]).await? {
        None => Some(Written::Missing),
        Some(row) => {
            let current = EntityTag::new_strong(row.get("etag"));
            (!preconditions.hold_for(Some(&current))).then_some(Written::PreconditionFailed)
        }
    })
}

/// `LIKE` pattern matching `text` anywhere, with its own wildcards escaped.
fn contains_pattern(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// One page in id order, plus whether more follow. The statement names only the filters the
/// query has (at most four shapes, each prepared once per connection), so PostgreSQL's cached
/// generic plan never carries an `IS NULL OR` that would keep it off the primary key index.
pub(crate) async fn list(
    client: &impl GenericClient,
    query: &MovieListQuery,
) -> Result<(Vec<Movie>, bool), tokio_postgres::Error> {
    let pattern = query.title_contains.as_deref().map(contains_pattern);
    let limit = query.limit + 1;
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(4);
    let mut conditions = Vec::with_capacity(2);
    if let Some(after_id) = &query.after_id {
        params.push(after_id);
        conditions.push(format!("id > ${}", params.len()));
    }
    if let Some(pattern) = &pattern {
        params.push(pattern);
        conditions.push(format!("title ILIKE ${}", params.len()));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    params.push(&limit);
    params.push(&query.offset);
    let sql = format!(
        "SELECT {COLUMNS} FROM movies {filter} ORDER BY id LIMIT ${} OFFSET ${}",
        params.len() - 1,
        params.len()
    );
    let statement = client.prepare_cached(&sql).await?;
    let rows = client.query(&statement, &params).await?;
    let has_more = rows.len() as i64 > query.limit;
    let movies = rows
        .iter()
        .take(query.limit as usize)
        .map(movie_from_row)
        .collect();
    Ok((movies, has_more))
}

pub(crate) async fn get(
    client: &impl GenericClient,
    id: MovieId,
) -> Result<Option<Movie>, tokio_postgres::Error> {
    let sql = format!("SELECT {COLUMNS} FROM movies WHERE id = $1");
    let statement = client.prepare_cached(&sql).await?;
    Ok(client
        .query_opt(&statement, &[&id.get()])
        .await?
        .as_ref()
        .map(movie_from_row))
}

/// Stores a new movie (and its `movie.created` event).
pub(crate) async fn insert(
    client: &mut deadpool_postgres::Client,
    draft: &MovieDraft,
) -> Result<Movie, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let sql = format!(
        "INSERT INTO movies (title, description, release_year, genres, runtime_minutes)
         VALUES ($1, $2, $3, $4, $5)
         RETURNING {COLUMNS}"
    );
    let statement = tx.prepare_cached(&sql).await?;
    let row = tx
        .query_one(&statement, &draft_params(draft).as_refs())
        .await?;
    let movie = movie_from_row(&row);
    record(
        &tx,
        CatalogueChange::Created {
            movie_id: movie.id,
            movie_version: movie.version,
            movie: movie.to_json(),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(movie)
}

/// Writes `change`'s event to the outbox, in `tx`.
async fn record(
    tx: &deadpool_postgres::Transaction<'_>,
    change: CatalogueChange,
) -> Result<(), tokio_postgres::Error> {
    let event = CatalogueEvent::new(change);
    let body = String::from_utf8(event.body()).expect("JSON is UTF-8");
    let statement = tx
        .prepare_cached(
            "INSERT INTO catalogue_outbox (event_id, routing_key, occurred_at, body)
             VALUES ($1, $2, $3, $4)",
        )
        .await?;
    tx.execute(
        &statement,
        &[
            &event.event_id,
            &event.change.routing_key(),
            &event.occurred_at,
            &body,
        ],
    )
    .await?;
    Ok(())
}

/// Replaces every field of a movie, if `preconditions` hold for it (checked with its row
/// locked: of concurrent writers with the same `If-Match`, one wins). The database bumps its
/// version and makes its new tag.
pub(crate) async fn replace(
    client: &mut deadpool_postgres::Client,
    id: MovieId,
    draft: &MovieDraft,
    preconditions: &Preconditions,
) -> Result<Written<Movie>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    if let Some(refused) = check(&tx, id, preconditions).await? {
        return Ok(refused.map());
    }
    let sql = format!(
        "UPDATE movies
         SET title = $1, description = $2, release_year = $3, genres = $4, runtime_minutes = $5,
             updated_at = now()
         WHERE id = $6
         RETURNING {COLUMNS}"
    );
    let params = draft_params(draft);
    let mut refs = params.as_refs();
    let id = id.get();
    refs.push(&id);
    let statement = tx.prepare_cached(&sql).await?;
    let Some(row) = tx.query_opt(&statement, &refs).await? else {
        return Ok(Written::Missing);
    };
    let movie = movie_from_row(&row);
    record(
        &tx,
        CatalogueChange::Replaced {
            movie_id: movie.id,
            movie_version: movie.version,
            movie: movie.to_json(),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Written::Done(movie))
}

/// Deletes a movie if `preconditions` hold for it.
pub(crate) async fn delete(
    client: &mut deadpool_postgres::Client,
    id: MovieId,
    preconditions: &Preconditions,
) -> Result<Written<()>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    if let Some(refused) = check(&tx, id, preconditions).await? {
        return Ok(refused);
    }
    let statement = tx
        .prepare_cached("DELETE FROM movies WHERE id = $1 RETURNING version")
        .await?;
    let Some(row) = tx.query_opt(&statement, &[&id.get()]).await? else {
        return Ok(Written::Missing);
    };
    record(
        &tx,
        CatalogueChange::Deleted {
            movie_id: id.get(),
            movie_version: row.get("version"),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Written::Done(()))
}

impl Written<()> {
    /// A refusal, as the refusal of a write that would have answered a `T`.
    fn map<T>(self) -> Written<T> {
        match self {
            Self::Done(()) => unreachable!("only refusals are mapped"),
            Self::Missing => Written::Missing,
            Self::PreconditionFailed => Written::PreconditionFailed,
        }
    }
}

/// Deletes every movie; returns how many there were. Emptying an empty catalogue changes
/// nothing, and records no event.
pub(crate) async fn delete_all(
    client: &mut deadpool_postgres::Client,
) -> Result<u64, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let deleted = tx.execute("DELETE FROM movies", &[]).await?;
    if deleted > 0 {
        record(&tx, CatalogueChange::AllDeleted { deleted }).await?;
    }
    tx.commit().await?;
    Ok(deleted)
}

/// The draft's columns in the order the statements above expect them.
struct DraftParams<'a> {
    title: &'a str,
    description: Option<&'a str>,
    release_year: Option<i16>,
    genres: &'a [String],
    runtime_minutes: Option<i32>,
}

fn draft_params(draft: &MovieDraft) -> DraftParams<'_> {
    DraftParams {
        title: draft.title.as_str(),
        description: draft.description.as_ref().map(|d| d.as_str()),
        release_year: draft.release_year.map(|y| y.get()),
        genres: draft.genres.as_slice(),
        runtime_minutes: draft.runtime_minutes.map(|m| m.get()),
    }
}

impl DraftParams<'_> {
    fn as_refs(&self) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
        vec![
            &self.title,
            &self.description,
            &self.release_year,
            &self.genres,
            &self.runtime_minutes,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_patterns_escape_like_wildcards() {
        assert_eq!(contains_pattern("100%_a\\b"), "%100\\%\\_a\\\\b%");
    }
}
