//! Parsed, valid-by-construction values: nothing invalid gets past the HTTP edge.

mod movie;
mod movie_id;
mod movie_list_query;

pub use movie::{Description, Genres, Movie, MovieDraft, ReleaseYear, RuntimeMinutes, Title};
pub use movie_id::MovieId;
pub use movie_list_query::MovieListQuery;
