//! The SQL: migrations, and one function per catalogue operation.

use tokio_postgres::GenericClient;
use tokio_postgres::Row;

use crate::domain::{Movie, MovieDraft, MovieId, MovieListQuery};

// Migrations from migrations/, serialised between instances by this (arbitrary) lock id.
common::embedded_schema!(0x1A7E_0001);

const COLUMNS: &str =
    "id, title, description, release_year, genres, runtime_minutes, created_at, updated_at";

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
    }
}

/// `LIKE` pattern matching `text` anywhere, with its own wildcards escaped.
fn contains_pattern(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// One page in id order, plus whether more follow.
pub async fn list(
    client: &impl GenericClient,
    query: &MovieListQuery,
) -> Result<(Vec<Movie>, bool), tokio_postgres::Error> {
    let pattern = query.title_contains.as_deref().map(contains_pattern);
    let sql = format!(
        "SELECT {COLUMNS} FROM movies
         WHERE ($1::BIGINT IS NULL OR id > $1)
           AND ($2::TEXT IS NULL OR title ILIKE $2)
         ORDER BY id
         LIMIT $3 OFFSET $4"
    );
    let rows = client
        .query(
            &sql,
            &[&query.after_id, &pattern, &(query.limit + 1), &query.offset],
        )
        .await?;
    let has_more = rows.len() as i64 > query.limit;
    let movies = rows
        .iter()
        .take(query.limit as usize)
        .map(movie_from_row)
        .collect();
    Ok((movies, has_more))
}

pub async fn get(
    client: &impl GenericClient,
    id: MovieId,
) -> Result<Option<Movie>, tokio_postgres::Error> {
    let sql = format!("SELECT {COLUMNS} FROM movies WHERE id = $1");
    Ok(client
        .query_opt(&sql, &[&id.get()])
        .await?
        .as_ref()
        .map(movie_from_row))
}

pub async fn insert(
    client: &impl GenericClient,
    draft: &MovieDraft,
) -> Result<Movie, tokio_postgres::Error> {
    let sql = format!(
        "INSERT INTO movies (title, description, release_year, genres, runtime_minutes)
         VALUES ($1, $2, $3, $4, $5)
         RETURNING {COLUMNS}"
    );
    let row = client
        .query_one(&sql, &draft_params(draft).as_refs())
        .await?;
    Ok(movie_from_row(&row))
}

/// Replaces every field of a movie; `None` if there is no such movie.
pub async fn replace(
    client: &impl GenericClient,
    id: MovieId,
    draft: &MovieDraft,
) -> Result<Option<Movie>, tokio_postgres::Error> {
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
    Ok(client
        .query_opt(&sql, &refs)
        .await?
        .as_ref()
        .map(movie_from_row))
}

/// Whether a movie was deleted.
pub async fn delete(
    client: &impl GenericClient,
    id: MovieId,
) -> Result<bool, tokio_postgres::Error> {
    Ok(client
        .execute("DELETE FROM movies WHERE id = $1", &[&id.get()])
        .await?
        == 1)
}

/// Deletes every movie; returns how many there were.
pub async fn delete_all(client: &impl GenericClient) -> Result<u64, tokio_postgres::Error> {
    client.execute("DELETE FROM movies", &[]).await
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
