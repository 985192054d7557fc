use std::collections::HashMap;

use common::{
    json_fields::{check_text, parse_integer_in},
    problem::{FieldError, Problem},
};

/// `GET /api/movies` parameters: `limit` (1-500, default 50); `cursor` (start after this id,
/// stable under concurrent inserts) and/or `offset` (skip this many); `q`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MovieListQuery {
    pub(crate) limit: i64,
    pub(crate) after_id: Option<i64>,
    pub(crate) offset: i64,
    /// Case-insensitive substring of the title.
    pub(crate) title_contains: Option<String>,
}

impl MovieListQuery {
    pub(crate) const DEFAULT_LIMIT: i64 = 50;
    pub(crate) const MAX_LIMIT: i64 = 500;
    pub(crate) const MAX_OFFSET: i64 = 1_000_000_000;
    /// Ids have at most 18 digits (as the API documents), far beyond any catalogue.
    pub(crate) const MAX_CURSOR: i64 = 999_999_999_999_999_999;

    pub(crate) fn parse(params: &HashMap<String, String>) -> Result<Self, Problem> {
        let mut errors = Vec::new();
        let mut number = |name: &str, range| {
            params
                .get(name)
                .and_then(|text| match parse_integer_in(text, range) {
                    Ok(n) => Some(n),
                    Err(message) => {
                        errors.push(FieldError::new(name, message));
                        None
                    }
                })
        };
        let limit = number("limit", 1..=Self::MAX_LIMIT).unwrap_or(Self::DEFAULT_LIMIT);
        let offset = number("offset", 0..=Self::MAX_OFFSET);
        let cursor = number("cursor", 0..=Self::MAX_CURSOR);
        let raw_q = params.get("q");
        if raw_q.is_some_and(|q| q.chars().count() > 200) {
            errors.push(FieldError::new("q", "must be at most 200 characters"));
        } else if let Some(Err(message)) = raw_q.map(|q| check_text(q, false)) {
            errors.push(FieldError::new("q", message));
        }
        let title_contains = raw_q.map(|q| q.trim()).filter(|q| !q.is_empty());
        if !errors.is_empty() {
            return Err(Problem::validation(errors));
        }
        Ok(Self {
            limit,
            after_id: cursor,
            offset: offset.unwrap_or(0),
            title_contains: title_contains.map(str::to_owned),
        })
    }

    /// The link to the page after one whose last movie has id `last_id`.
    pub(crate) fn next_link(&self, last_id: i64) -> String {
        let mut link = format!("/api/movies?limit={}&cursor={last_id}", self.limit);
        if let Some(q) = &self.title_contains {
            link.push_str("&q=");
            link.push_str(&percent_encode(q));
        }
        link
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<MovieListQuery, Problem> {
        let map = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        MovieListQuery::parse(&map)
    }

    #[test]
    fn defaults() {
        let query = parse(&[]).unwrap();
        assert_eq!(query.limit, 50);
        assert_eq!((query.after_id, query.offset), (None, 0));
        assert_eq!(query.title_contains, None);
    }

    #[test]
    fn out_of_bounds_values_are_field_errors_and_cursor_and_offset_combine() {
        for (k, v) in [
            ("limit", "0"),
            ("limit", "501"),
            ("limit", "x"),
            ("offset", "-1"),
            ("cursor", "1.5"),
        ] {
            let problem = parse(&[(k, v)]).unwrap_err();
            assert_eq!(problem.errors[0].field, k);
        }
        let both = parse(&[("offset", "1"), ("cursor", "2")]).unwrap();
        assert_eq!((both.after_id, both.offset), (Some(2), 1));
        assert!(parse(&[("q", &"x".repeat(201))]).is_err());
        assert!(
            parse(&[("q", "nul\u{0}byte")]).is_err(),
            "PostgreSQL text cannot hold NUL"
        );
    }

    #[test]
    fn next_link_keeps_the_search_and_encodes_it() {
        let query = parse(&[("limit", "2"), ("q", "Amélie & co")]).unwrap();
        assert_eq!(
            query.next_link(7),
            "/api/movies?limit=2&cursor=7&q=Am%C3%A9lie%20%26%20co"
        );
    }
}
