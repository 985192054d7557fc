//! Parsed, valid-by-construction values: nothing invalid gets past the HTTP edge.

mod movie;
mod movie_id;
mod movie_list_query;

pub(crate) use movie::{Movie, MovieDraft};
pub(crate) use movie_id::MovieId;
pub(crate) use movie_list_query::MovieListQuery;
